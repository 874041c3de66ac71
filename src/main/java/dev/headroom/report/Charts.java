package dev.headroom.report;

import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.ValueAxis;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.Rectangle2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Line charts written as PNG (JFreeChart), for benchmark and study results. */
public final class Charts {
    private static final Color[] PALETTE = {
            new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e),
            new Color(0x9467bd), new Color(0x8c564b), new Color(0x7f7f7f)};

    private Charts() {}

    /** One chart: named series of (x, y) points. Dashed series are drawn thin and dashed (references). */
    public record Panel(String title, String xLabel, String yLabel, boolean logX, boolean logY,
                        Map<String, List<double[]>> series, List<String> dashed) {
        public Panel {
            series = new LinkedHashMap<>(series);
        }
    }

    /** Draws panels side by side into one PNG of {@code width × height} per panel. */
    public static void write(Path file, int width, int height, List<Panel> panels) throws IOException {
        BufferedImage image = new BufferedImage(width * panels.size(), height, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, image.getWidth(), image.getHeight());
        for (int p = 0; p < panels.size(); p++) {
            chart(panels.get(p)).draw(g, new Rectangle2D.Double(p * width, 0, width, height));
        }
        g.dispose();
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        javax.imageio.ImageIO.write(image, "png", file.toFile());
    }

    static JFreeChart chart(Panel panel) {
        XYSeriesCollection data = new XYSeriesCollection();
        for (Map.Entry<String, List<double[]>> e : panel.series().entrySet()) {
            XYSeries s = new XYSeries(e.getKey(), false, true);
            for (double[] pt : e.getValue()) {
                if ((!panel.logX() || pt[0] > 0) && (!panel.logY() || pt[1] > 0)) s.add(pt[0], pt[1]);
            }
            data.addSeries(s);
        }
        ValueAxis x = axis(panel.xLabel(), panel.logX(), 2);
        boolean integerX = panel.series().values().stream().flatMap(List::stream).allMatch(pt -> pt[0] == Math.rint(pt[0]));
        if (integerX && x instanceof NumberAxis n) n.setStandardTickUnits(NumberAxis.createIntegerTickUnits()); // stages, not 0.2 steps
        ValueAxis y = axis(panel.yLabel(), panel.logY(), 10);
        XYLineAndShapeRenderer r = new XYLineAndShapeRenderer(true, true);
        int i = 0;
        for (String name : panel.series().keySet()) {
            Color c = PALETTE[i % PALETTE.length];
            r.setSeriesPaint(i, c);
            boolean dash = panel.dashed().contains(name);
            r.setSeriesStroke(i, dash ? new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f,
                    new float[]{6f, 4f}, 0f) : new BasicStroke(2.2f));
            r.setSeriesShapesVisible(i, !dash);
            i++;
        }
        XYPlot plot = new XYPlot(data, x, y, r);
        plot.setBackgroundPaint(Color.WHITE);
        plot.setDomainGridlinePaint(new Color(0xdddddd));
        plot.setRangeGridlinePaint(new Color(0xdddddd));
        JFreeChart chart = new JFreeChart(panel.title(), new Font("SansSerif", Font.BOLD, 15), plot, true);
        chart.setBackgroundPaint(Color.WHITE);
        return chart;
    }

    private static ValueAxis axis(String label, boolean log, double base) {
        if (!log) {
            NumberAxis a = new NumberAxis(label);
            a.setAutoRangeIncludesZero(true); // linear axes start at 0, so differences are not magnified
            return a;
        }
        LogAxis a = new LogAxis(label);
        a.setBase(base);
        a.setSmallestValue(1e-9);
        a.setTickUnit(new org.jfree.chart.axis.NumberTickUnit(1.0)); // one tick per power of the base
        a.setNumberFormatOverride(new java.text.DecimalFormat("#,##0.###")); // 1,024 and 0.05, not 2^10 and 10^-1.3
        a.setMinorTickMarksVisible(true);
        return a;
    }
}
