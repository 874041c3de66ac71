package dev.headroom.report;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.headroom.probe.Confusion;
import dev.headroom.probe.ProbeRun;
import dev.headroom.probe.ProbeStudy;
import dev.headroom.probe.Representation;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The files of a probing run ({@link ProbeRun}): CSV and JSON of every probe, a layers × heads
 * heatmap of accuracy and of selectivity (PNG), a line plot per layer (PNG), and per-tag scores
 * of the best heads, with the head that scores best on each tag.
 */
public final class ProbeReport {
    /** Heads reported tag by tag: the best by test accuracy. */
    public static final int BEST_HEADS = 5;

    private final ProbeRun run;
    private final List<Representation> heads, stages;
    private final int layers, headsPerLayer;

    public ProbeReport(ProbeRun run) {
        this.run = run;
        List<Representation> all = run.trained().results().stream().map(ProbeStudy.Result::representation).distinct()
                .sorted(Comparator.comparingInt(Representation::index)).toList();
        this.heads = all.stream().filter(Representation::isHead).toList();
        this.stages = all.stream().filter(r -> !r.isHead()).toList();
        this.layers = heads.stream().mapToInt(Representation::layer).max().orElse(-1) + 1;
        this.headsPerLayer = heads.stream().mapToInt(Representation::head).max().orElse(-1) + 1;
    }

    /** Writes every file into {@code dir}; returns their names. */
    public List<String> write(Path dir) throws IOException {
        Files.createDirectories(dir);
        List<String> files = new ArrayList<>();
        writeString(dir.resolve("probes.csv"), probesCsv());
        files.add("probes.csv");
        if (!heads.isEmpty()) {
            writeString(dir.resolve("heads.csv"), summaryCsv(heads));
            files.add("heads.csv");
            writeHeatmaps(dir.resolve("heads.png"));
            files.add("heads.png");
            writeString(dir.resolve("tags.csv"), tagsCsv());
            files.add("tags.csv");
            writeString(dir.resolve("best-heads-per-tag.csv"), bestHeadsPerTagCsv());
            files.add("best-heads-per-tag.csv");
        }
        if (!stages.isEmpty()) {
            writeString(dir.resolve("layers.csv"), summaryCsv(stages));
            files.add("layers.csv");
            writeLayerPlot(dir.resolve("layers.png"));
            files.add("layers.png");
        }
        writeString(dir.resolve("probe.json"), json());
        files.add("probe.json");
        return files;
    }

    // ---- numbers ----------------------------------------------------------------------------

    private double accuracy(boolean trained, String task, Representation r) {
        ProbeStudy.Result result = run.result(trained, task, r.index());
        return result == null ? Double.NaN : result.testAccuracy();
    }

    private double selectivity(boolean trained, Representation r) {
        return run.result(trained, run.task(), r.index()) == null ? Double.NaN : run.selectivity(trained, r.index());
    }

    /** The heads sorted by test accuracy on the task, best first (trained model). */
    public List<Representation> headsByAccuracy() {
        return heads.stream().sorted(Comparator.comparingDouble((Representation r) -> -accuracy(true, run.task(), r))
                .thenComparingInt(Representation::index)).toList();
    }

    private String probesCsv() {
        StringBuilder s = new StringBuilder("model,task,representation,layer,head,dim,l2,dev_accuracy,test_accuracy,test_words,dev_accuracy_by_l2\n");
        for (ProbeStudy.Outcome o : outcomes()) {
            for (ProbeStudy.Result r : o.results()) {
                Representation rep = r.representation();
                StringBuilder grid = new StringBuilder();
                for (double a : r.devByL2()) grid.append(grid.isEmpty() ? "" : " ").append(fmt(a));
                s.append(String.join(",", o.model(), r.task(), rep.name(), String.valueOf(rep.layer()), String.valueOf(rep.head()),
                        String.valueOf(rep.dim()), String.valueOf(r.l2()), fmt(r.devAccuracy()), fmt(r.testAccuracy()),
                        String.valueOf(r.test().total()), grid.toString())).append('\n');
            }
        }
        return s.toString();
    }

    /** Per representation: accuracy, control accuracy and selectivity, trained and untrained, beside the baseline. */
    private String summaryCsv(List<Representation> reps) {
        StringBuilder s = new StringBuilder("representation,layer,head,accuracy,control_accuracy,selectivity,"
                + "random_accuracy,random_control_accuracy,random_selectivity,majority_baseline\n");
        double baseline = run.baselineTest().confusion().accuracy();
        for (Representation r : reps) {
            s.append(String.join(",", r.name(), String.valueOf(r.layer()), String.valueOf(r.head()),
                    fmt(accuracy(true, run.task(), r)), fmt(accuracy(true, run.controlTask(), r)), fmt(selectivity(true, r)),
                    fmt(accuracy(false, run.task(), r)), fmt(accuracy(false, run.controlTask(), r)), fmt(selectivity(false, r)),
                    fmt(baseline))).append('\n');
        }
        return s.toString();
    }

    /** Precision, recall and F1 per tag for the best heads and the best layer. */
    private String tagsCsv() {
        StringBuilder s = new StringBuilder("representation,tag,support,precision,recall,f1,test_accuracy\n");
        List<Representation> shown = new ArrayList<>(headsByAccuracy().subList(0, Math.min(BEST_HEADS, heads.size())));
        bestStage().ifPresent(shown::add);
        for (Representation r : shown) {
            ProbeStudy.Result result = run.result(true, run.task(), r.index());
            Confusion c = result.test();
            for (int t = 0; t < run.classes().size(); t++) {
                s.append(String.join(",", r.name(), csvTag(run.classes().get(t)), String.valueOf(c.support(t)), fmt(c.precision(t)),
                        fmt(c.recall(t)), fmt(c.f1(t)), fmt(c.accuracy()))).append('\n');
            }
        }
        return s.toString();
    }

    /** Per tag, the two heads with the best test F1 (trained model). */
    private String bestHeadsPerTagCsv() {
        StringBuilder s = new StringBuilder("tag,head,f1,second_head,second_f1\n");
        for (Map.Entry<String, List<Map.Entry<Representation, Double>>> e : bestHeadsPerTag().entrySet()) {
            List<Map.Entry<Representation, Double>> top = e.getValue();
            s.append(String.join(",", csvTag(e.getKey()), top.get(0).getKey().name(), fmt(top.get(0).getValue()),
                    top.size() > 1 ? top.get(1).getKey().name() : "", top.size() > 1 ? fmt(top.get(1).getValue()) : "")).append('\n');
        }
        return s.toString();
    }

    /** Per tag, the heads of the trained model by test F1 on that tag, best first. */
    public Map<String, List<Map.Entry<Representation, Double>>> bestHeadsPerTag() {
        Map<String, List<Map.Entry<Representation, Double>>> out = new LinkedHashMap<>();
        for (int t = 0; t < run.classes().size(); t++) {
            int tag = t;
            List<Map.Entry<Representation, Double>> ranked = heads.stream()
                    .map(r -> Map.entry(r, run.result(true, run.task(), r.index()).test().f1(tag)))
                    .sorted(Comparator.comparingDouble((Map.Entry<Representation, Double> e) -> -e.getValue())
                            .thenComparingInt(e -> e.getKey().index())).toList();
            out.put(run.classes().get(t), ranked);
        }
        return out;
    }

    /** The residual stage with the best test accuracy (trained). */
    public java.util.Optional<Representation> bestStage() {
        return stages.stream().max(Comparator.comparingDouble((Representation r) -> accuracy(true, run.task(), r))
                .thenComparingInt(r -> -r.index()));
    }

    private static String csvTag(String tag) {
        return tag.equals(".") ? "\".\"" : tag;
    }

    private List<ProbeStudy.Outcome> outcomes() {
        List<ProbeStudy.Outcome> o = new ArrayList<>();
        o.add(run.trained());
        if (run.random() != null) o.add(run.random());
        return o;
    }

    private String json() {
        JsonObject root = new JsonObject();
        root.addProperty("task", run.task());
        root.addProperty("control_task", run.controlTask());
        JsonArray classes = new JsonArray();
        run.classes().forEach(classes::add);
        root.add("classes", classes);
        JsonObject settings = new JsonObject();
        run.settings().forEach((k, v) -> settings.addProperty(k, String.valueOf(v)));
        root.add("settings", settings);
        JsonObject baseline = new JsonObject();
        baseline.addProperty("dev_accuracy", run.baselineDev().confusion().accuracy());
        baseline.addProperty("test_accuracy", run.baselineTest().confusion().accuracy());
        baseline.addProperty("test_words", run.baselineTest().confusion().total());
        baseline.addProperty("test_unseen_words", run.baselineTest().unseenWords());
        baseline.addProperty("test_unseen_correct", run.baselineTest().unseenCorrect());
        baseline.add("test_per_tag", perTag(run.baselineTest().confusion()));
        root.add("majority_baseline", baseline);
        JsonArray models = new JsonArray();
        for (ProbeStudy.Outcome o : outcomes()) {
            JsonObject m = new JsonObject();
            m.addProperty("model", o.model());
            m.addProperty("extraction_seconds", o.extractionSeconds());
            m.addProperty("training_seconds", o.trainingSeconds());
            m.addProperty("extraction_peak_off_heap_bytes", o.extractionPeakOffHeap());
            JsonObject parts = new JsonObject();
            o.extraction().forEach((p, st) -> parts.add(p.label(), new GsonBuilder().create().toJsonTree(st)));
            m.add("extraction", parts);
            JsonArray results = new JsonArray();
            for (ProbeStudy.Result r : o.results()) {
                JsonObject j = new JsonObject();
                j.addProperty("task", r.task());
                j.addProperty("representation", r.representation().name());
                j.addProperty("layer", r.representation().layer());
                j.addProperty("head", r.representation().head());
                j.addProperty("dim", r.representation().dim());
                j.addProperty("l2", r.l2());
                JsonArray grid = new JsonArray();
                for (double a : r.devByL2()) grid.add(a);
                j.add("dev_accuracy_by_l2", grid);
                j.addProperty("dev_accuracy", r.devAccuracy());
                j.addProperty("test_accuracy", r.testAccuracy());
                j.add("test_per_tag", perTag(r.test()));
                results.add(j);
            }
            m.add("results", results);
            models.add(m);
        }
        root.add("models", models);
        return new GsonBuilder().setPrettyPrinting().serializeSpecialFloatingPointValues().create().toJson(root);
    }

    private JsonObject perTag(Confusion c) {
        JsonObject o = new JsonObject();
        for (int t = 0; t < run.classes().size(); t++) {
            JsonObject tag = new JsonObject();
            tag.addProperty("support", c.support(t));
            tag.addProperty("precision", c.precision(t));
            tag.addProperty("recall", c.recall(t));
            tag.addProperty("f1", c.f1(t));
            o.add(run.classes().get(t), tag);
        }
        return o;
    }

    // ---- pictures ---------------------------------------------------------------------------

    /**
     * Heatmaps per head (layers down, heads across), one panel under the other: test accuracy of the
     * trained model, of the untrained one (the same colour scale, so that they compare), and the
     * trained model's selectivity (a scale of its own).
     */
    private void writeHeatmaps(Path file) throws IOException {
        List<String> titles = new ArrayList<>();
        List<double[][]> values = new ArrayList<>();
        List<Integer> scale = new ArrayList<>(); // panels with the same scale id share a colour range
        titles.add("accuracy, " + run.trained().model());
        values.add(grid(r -> accuracy(true, run.task(), r)));
        scale.add(0);
        if (run.random() != null) {
            titles.add("accuracy, " + run.random().model() + " (untrained, same shapes; same colour scale)");
            values.add(grid(r -> accuracy(false, run.task(), r)));
            scale.add(0);
        }
        titles.add("selectivity = accuracy − control-task accuracy, " + run.trained().model());
        values.add(grid(r -> selectivity(true, r)));
        scale.add(1);
        double[] min = {Double.POSITIVE_INFINITY, Double.POSITIVE_INFINITY}, max = {Double.NEGATIVE_INFINITY, Double.NEGATIVE_INFINITY};
        for (int p = 0; p < values.size(); p++) {
            for (double[] row : values.get(p)) for (double x : row) if (!Double.isNaN(x)) {
                min[scale.get(p)] = Math.min(min[scale.get(p)], x);
                max[scale.get(p)] = Math.max(max[scale.get(p)], x);
            }
        }
        int cell = 46, left = 70, top = 40, title = 30, legend = 90;
        int panelHeight = title + 22 + layers * cell + 16;
        BufferedImage img = new BufferedImage(left + headsPerLayer * cell + legend + 20, top + panelHeight * titles.size() + 30,
                BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, img.getWidth(), img.getHeight());
        g.setColor(Color.DARK_GRAY);
        g.setFont(new Font("SansSerif", Font.BOLD, 14));
        g.drawString("Linear probes for " + run.task() + " on each head's output Z_h, test split, %", 10, 18);
        g.setFont(new Font("SansSerif", Font.PLAIN, 12));
        g.drawString("majority tag per word: " + pct(run.baselineTest().confusion().accuracy()), 10, 34);
        for (int p = 0; p < titles.size(); p++) {
            double[][] v = values.get(p);
            double lo = min[scale.get(p)], hi = max[scale.get(p)];
            int x0 = 10, y0 = top + p * panelHeight + title;
            g.setFont(new Font("SansSerif", Font.BOLD, 13));
            g.setColor(Color.DARK_GRAY);
            g.drawString(titles.get(p), x0, y0 - 8);
            g.setFont(new Font("SansSerif", Font.PLAIN, 11));
            for (int h = 0; h < headsPerLayer; h++) g.drawString("h" + h, x0 + left + h * cell + cell / 2 - 8, y0 + 12);
            int gy = y0 + 18;
            for (int l = 0; l < layers; l++) {
                g.setColor(Color.DARK_GRAY);
                g.drawString("layer " + l, x0, gy + l * cell + cell / 2 + 4);
                for (int h = 0; h < headsPerLayer; h++) {
                    double x = v[l][h];
                    int cx = x0 + left + h * cell, cy = gy + l * cell;
                    double t = hi > lo ? (x - lo) / (hi - lo) : 0.5;
                    g.setColor(Double.isNaN(x) ? Color.LIGHT_GRAY : AttentionReport.color(0.05 + 0.9 * t));
                    g.fillRect(cx, cy, cell - 2, cell - 2);
                    g.setColor(t > 0.55 ? Color.WHITE : Color.BLACK);
                    String label = Double.isNaN(x) ? "" : String.format(Locale.ROOT, "%.1f", 100 * x);
                    FontMetrics fm = g.getFontMetrics();
                    g.drawString(label, cx + (cell - 2 - fm.stringWidth(label)) / 2, cy + cell / 2 + 4);
                }
            }
            int bx = x0 + left + headsPerLayer * cell + 12, bh = layers * cell - 2;
            for (int y = 0; y < bh; y++) {
                g.setColor(AttentionReport.color(0.05 + 0.9 * (1 - y / (double) Math.max(1, bh - 1))));
                g.fillRect(bx, gy + y, 14, 1);
            }
            g.setColor(Color.DARK_GRAY);
            g.drawString(pct(hi), bx + 18, gy + 10);
            g.drawString(pct(lo), bx + 18, gy + bh);
        }
        g.drawString("control task: each word type a fixed random tag (Hewitt & Liang 2019)", 10, img.getHeight() - 12);
        g.dispose();
        writeImage(img, file);
    }

    private double[][] grid(java.util.function.ToDoubleFunction<Representation> value) {
        double[][] v = new double[layers][headsPerLayer];
        for (double[] row : v) java.util.Arrays.fill(row, Double.NaN);
        for (Representation r : heads) v[r.layer()][r.head()] = value.applyAsDouble(r);
        return v;
    }

    /** Test accuracy per stage (0 = embeddings, l + 1 = after layer l), with the best head of each layer and the baseline. */
    private void writeLayerPlot(Path file) throws IOException {
        Map<String, List<double[]>> series = new LinkedHashMap<>();
        List<double[]> acc = new ArrayList<>(), control = new ArrayList<>(), random = new ArrayList<>(), bestHead = new ArrayList<>(),
                selectivity = new ArrayList<>(), baseline = new ArrayList<>();
        double base = 100 * run.baselineTest().confusion().accuracy();
        for (Representation r : stages) {
            acc.add(new double[]{r.layer(), 100 * accuracy(true, run.task(), r)});
            control.add(new double[]{r.layer(), 100 * accuracy(true, run.controlTask(), r)});
            selectivity.add(new double[]{r.layer(), 100 * selectivity(true, r)});
            if (run.random() != null) random.add(new double[]{r.layer(), 100 * accuracy(false, run.task(), r)});
            baseline.add(new double[]{r.layer(), base});
        }
        for (int l = 0; l < layers; l++) {
            int layer = l;
            double best = heads.stream().filter(h -> h.layer() == layer).mapToDouble(h -> accuracy(true, run.task(), h)).max().orElse(Double.NaN);
            bestHead.add(new double[]{l + 1, 100 * best}); // head outputs of layer l feed the residual after layer l
        }
        series.put("residual stream, " + run.trained().model(), acc);
        series.put("best single head of the layer", bestHead);
        series.put("control task (residual)", control);
        series.put("selectivity (residual)", selectivity);
        if (!random.isEmpty()) series.put("residual stream, " + run.random().model(), random);
        series.put("majority tag per word", baseline);
        Charts.write(file, 900, 520, List.of(new Charts.Panel(run.task() + " probe accuracy by layer (test, %); x = 0: embeddings, x = l + 1: after layer l",
                "stage", "%", false, false, series, List.of("majority tag per word"))));
    }

    // ---- helpers ----------------------------------------------------------------------------

    private static String fmt(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.6f", v);
    }

    private static String pct(double v) {
        return String.format(Locale.ROOT, "%.1f %%", 100 * v);
    }

    private static void writeString(Path file, String s) throws IOException {
        Files.writeString(file, s, StandardCharsets.UTF_8);
    }

    private static void writeImage(BufferedImage img, Path file) throws IOException {
        ImageIO.write(img, "png", file.toFile());
    }
}
