package dev.headroom.report;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadRole;
import dev.headroom.inspect.HeadSummary;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.AffineTransform;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.Locale;

/**
 * Pictures and files of what heads do: PNG heatmaps (one head with token labels; a grid of every
 * head of every layer), a self-contained HTML viewer, BertViz-shaped JSON, and the statistics as
 * CSV and JSON. Built from per-layer captures of every head (batch element 0 is drawn) and the
 * per-layer head summaries.
 */
public final class AttentionReport {
    /** One layer: a capture of its heads and their summaries (indexed by head). */
    public record Layer(AttentionCapture capture, HeadSummary[] summaries) {}

    private final String title;
    private final List<String> tokens;
    private final List<Layer> layers;

    public AttentionReport(String title, List<String> tokens, List<Layer> layers) {
        if (layers.isEmpty()) throw new IllegalArgumentException("a report needs at least one layer");
        this.title = title;
        this.tokens = List.copyOf(tokens);
        this.layers = List.copyOf(layers);
        for (Layer l : layers) {
            if (l.capture.keys() != tokens.size()) {
                throw new IllegalArgumentException(tokens.size() + " token labels for " + l.capture.keys() + " keys");
            }
        }
    }

    /**
     * Every file of an inspection into {@code out} (created if missing): statistics.csv and .json,
     * roles.txt (one line per head, also printed to {@code log}), heads/layerL_headHH.png,
     * grid.png, report.html and, for at most 512 tokens, attention.json (BertViz shape).
     */
    public void writeAll(Path out, PrintStream log) throws IOException {
        Files.createDirectories(out);
        writeStatisticsCsv(out.resolve("statistics.csv"));
        writeStatisticsJson(out.resolve("statistics.json"));
        StringBuilder roles = new StringBuilder();
        for (int l = 0; l < layers.size(); l++) {
            for (HeadSummary h : layers.get(l).summaries()) {
                String line = String.format(Locale.ROOT, "layer %d head %2d  %s", l, h.head(), h.describe());
                roles.append(line).append('\n');
                log.println(line);
            }
        }
        Files.writeString(out.resolve("roles.txt"), roles.toString());
        for (int l = 0; l < layers.size(); l++) {
            for (int h = 0; h < layers.get(l).summaries().length; h++) {
                writeHeadPng(out.resolve("heads").resolve(String.format("layer%d_head%02d.png", l, h)), l, h);
            }
        }
        writeGridPng(out.resolve("grid.png"));
        writeHtml(out.resolve("report.html"));
        if (tokens.size() <= 512) writeBertVizJson(out.resolve("attention.json"));
        log.println("wrote statistics.csv, statistics.json, roles.txt, heads/*.png, grid.png, report.html"
                + (tokens.size() <= 512 ? ", attention.json (BertViz shape)" : "") + " to " + out);
    }

    // ---- colours ----------------------------------------------------------------------------

    /** White through blue to near-black, for p in [0, 1] (sequential, readable in print). */
    static Color color(double p) {
        double[][] stops = {{1, 1, 1}, {0.78, 0.86, 0.94}, {0.42, 0.68, 0.84}, {0.13, 0.44, 0.71}, {0.03, 0.19, 0.42}};
        double t = Math.clamp(p, 0, 1) * (stops.length - 1);
        int a = (int) Math.floor(t), b = Math.min(stops.length - 1, a + 1);
        double f = t - a;
        return new Color((float) (stops[a][0] + f * (stops[b][0] - stops[a][0])),
                (float) (stops[a][1] + f * (stops[b][1] - stops[a][1])),
                (float) (stops[a][2] + f * (stops[b][2] - stops[a][2])));
    }

    /** p(row r of the capture → key j), r indexing the captured rows. */
    private static float prob(AttentionCapture c, int head, int r, int j) {
        return c.get(0, head, c.rows()[r], j);
    }

    // ---- PNG ----------------------------------------------------------------------------------

    /** One head as a heatmap with token labels on both axes (queries down, keys across). */
    public void writeHeadPng(Path file, int layer, int head) throws IOException {
        AttentionCapture c = layers.get(layer).capture;
        int[] rows = c.rows();
        int n = c.keys();
        int cell = Math.max(2, Math.min(28, 900 / Math.max(n, rows.length)));
        boolean labels = cell >= 8;
        int margin = labels ? 110 : 40, top = margin + 30;
        BufferedImage img = new BufferedImage(margin + n * cell + 90, top + rows.length * cell + 20, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, img.getWidth(), img.getHeight());
        for (int r = 0; r < rows.length; r++) {
            for (int j = 0; j < n; j++) {
                g.setColor(color(prob(c, head, r, j)));
                g.fillRect(margin + j * cell, top + r * cell, cell, cell);
            }
        }
        g.setColor(Color.DARK_GRAY);
        g.setFont(new Font("SansSerif", Font.BOLD, 14));
        HeadSummary s = layers.get(layer).summaries[head];
        g.drawString(String.format("layer %d, head %d: %s", layer, head, s == null ? "" : s.describe()), 8, 18);
        if (labels) {
            g.setFont(new Font("SansSerif", Font.PLAIN, Math.min(12, cell - 1)));
            FontMetrics fm = g.getFontMetrics();
            for (int r = 0; r < rows.length; r++) {
                String t = label(rows[r]);
                g.drawString(t, margin - 4 - fm.stringWidth(t), top + r * cell + (cell + fm.getAscent()) / 2 - 1);
            }
            AffineTransform saved = g.getTransform();
            for (int j = 0; j < n; j++) {
                g.setTransform(saved);
                g.translate(margin + j * cell + (cell + fm.getAscent()) / 2 - 1, top - 4);
                g.rotate(-Math.PI / 2);
                g.drawString(label(j), 0, 0);
            }
            g.setTransform(saved);
        }
        // colour bar
        int bx = margin + n * cell + 20;
        for (int y = 0; y < rows.length * cell; y++) {
            g.setColor(color(1 - y / (double) Math.max(1, rows.length * cell - 1)));
            g.fillRect(bx, top + y, 14, 1);
        }
        g.setColor(Color.DARK_GRAY);
        g.setFont(new Font("SansSerif", Font.PLAIN, 11));
        g.drawString("1", bx + 18, top + 10);
        g.drawString("0", bx + 18, top + rows.length * cell);
        g.dispose();
        write(img, file);
    }

    private String label(int position) {
        String t = tokens.get(position);
        return t.length() > 14 ? t.substring(0, 13) + "…" : t;
    }

    /** Every head of every layer as thumbnails, layers down, heads across, roles under each. */
    public void writeGridPng(Path file) throws IOException {
        int heads = layers.getFirst().summaries.length;
        AttentionCapture first = layers.getFirst().capture;
        int rows = first.rows().length, n = first.keys();
        int thumb = 120, pad = 26, left = 60;
        BufferedImage img = new BufferedImage(left + heads * (thumb + 8), 40 + layers.size() * (thumb + pad + 8), BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, img.getWidth(), img.getHeight());
        g.setColor(Color.DARK_GRAY);
        g.setFont(new Font("SansSerif", Font.BOLD, 14));
        g.drawString(title, 8, 20);
        g.setFont(new Font("SansSerif", Font.PLAIN, 11));
        for (int l = 0; l < layers.size(); l++) {
            AttentionCapture c = layers.get(l).capture;
            int y0 = 40 + l * (thumb + pad + 8);
            g.setColor(Color.DARK_GRAY);
            g.drawString("layer " + l, 6, y0 + thumb / 2);
            for (int h = 0; h < heads; h++) {
                int x0 = left + h * (thumb + 8);
                if (c.hasHead(h)) {
                    for (int py = 0; py < thumb; py++) {
                        int r = (int) ((long) py * rows / thumb);
                        for (int px = 0; px < thumb; px++) {
                            int j0 = (int) ((long) px * n / thumb), j1 = Math.max(j0 + 1, (int) ((long) (px + 1) * n / thumb));
                            float max = 0;
                            for (int j = j0; j < j1; j++) max = Math.max(max, prob(c, h, r, j)); // max-pool keeps peaks visible
                            img.setRGB(x0 + px, y0 + py, color(max).getRGB());
                        }
                    }
                }
                g.setColor(Color.LIGHT_GRAY);
                g.drawRect(x0, y0, thumb, thumb);
                g.setColor(Color.DARK_GRAY);
                HeadSummary s = layers.get(l).summaries[h];
                g.drawString(h + ": " + (s == null ? "" : shortRole(s.role())), x0 + 2, y0 + thumb + 14);
            }
        }
        g.dispose();
        write(img, file);
    }

    static String shortRole(HeadRole r) {
        return r.name().toLowerCase(Locale.ROOT).replace('_', ' ');
    }

    private static void write(BufferedImage img, Path file) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        ImageIO.write(img, "png", file.toFile());
    }

    // ---- JSON, CSV ---------------------------------------------------------------------------

    /** BertViz's shape: {"tokens": [...], "attention": [layer][head][query][key]} (captured heads and rows). */
    public void writeBertVizJson(Path file) throws IOException {
        JsonObject root = new JsonObject();
        JsonArray tok = new JsonArray();
        tokens.forEach(tok::add);
        root.add("tokens", tok);
        JsonArray att = new JsonArray();
        for (Layer l : layers) {
            JsonArray heads = new JsonArray();
            for (int h : l.capture.heads()) {
                JsonArray rows = new JsonArray();
                for (int r = 0; r < l.capture.rows().length; r++) {
                    JsonArray row = new JsonArray();
                    for (int j = 0; j < l.capture.keys(); j++) row.add(Math.round(prob(l.capture, h, r, j) * 1e6) / 1e6);
                    rows.add(row);
                }
                heads.add(rows);
            }
            att.add(heads);
        }
        root.add("attention", att);
        writeString(file, root.toString());
    }

    /** One row per (layer, head) with every statistic and the roles. */
    public void writeStatisticsCsv(Path file) throws IOException {
        StringBuilder s = new StringBuilder("layer,head,role,roles,rows,entropy,normalized_entropy,distance,self,previous,next,first,"
                + "delimiter,band_k,band_mass,confidence,argmax_offset,argmax_share,top_columns,column_concentration,"
                + "duplicate_token,induction\n");
        for (int l = 0; l < layers.size(); l++) {
            for (HeadSummary h : layers.get(l).summaries) {
                if (h == null) continue;
                s.append(String.format(Locale.ROOT, "%d,%d,%s,%s,%d,%.6f,%.6f,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%.6f,%.6f,%d,%.6f,%d,%.6f,%.6f,%.6f%n",
                        l, h.head(), h.role(), String.join(" ", h.roles().stream().map(Enum::name).toList()), h.rows(),
                        h.entropy(), h.normalizedEntropy(), h.distance(), h.self(), h.previous(), h.next(), h.first(),
                        h.delimiter(), h.band(), h.bandMass(), h.confidence(), h.argmaxOffset(), h.argmaxShare(),
                        h.topColumns(), h.columnConcentration(), h.duplicateToken(), h.induction()));
            }
        }
        writeString(file, s.toString());
    }

    /** The statistics, roles and descriptions as JSON: [{layer, head, role, roles, describe, ...}]. */
    public void writeStatisticsJson(Path file) throws IOException {
        writeString(file, gson().toJson(statisticsJson()));
    }

    private JsonArray statisticsJson() {
        JsonArray all = new JsonArray();
        for (int l = 0; l < layers.size(); l++) {
            for (HeadSummary h : layers.get(l).summaries) {
                if (h == null) continue;
                JsonObject o = gson().toJsonTree(h).getAsJsonObject();
                o.addProperty("layer", l);
                o.addProperty("role", h.role().name());
                JsonArray roles = new JsonArray();
                h.roles().forEach(r -> roles.add(r.name()));
                o.add("roles", roles);
                o.addProperty("describe", h.describe());
                all.add(o);
            }
        }
        return all;
    }

    private static Gson gson() {
        return new GsonBuilder().serializeSpecialFloatingPointValues().setPrettyPrinting().create();
    }

    // ---- HTML -------------------------------------------------------------------------------

    /**
     * A single HTML file that works offline: the probabilities (quantised to bytes, base64), tokens
     * and statistics are embedded; the page draws the chosen layer and head as a heatmap and as
     * token-to-token lines (like BertViz's head view), with the statistics and roles beside it.
     */
    public void writeHtml(Path file) throws IOException {
        JsonObject data = new JsonObject();
        data.addProperty("title", title);
        JsonArray tok = new JsonArray();
        tokens.forEach(tok::add);
        data.add("tokens", tok);
        JsonArray ls = new JsonArray();
        for (Layer l : layers) {
            JsonObject lo = new JsonObject();
            JsonArray rows = new JsonArray();
            for (int r : l.capture.rows()) rows.add(r);
            lo.add("rows", rows);
            JsonArray heads = new JsonArray();
            for (int h = 0; h < l.summaries.length; h++) {
                JsonObject ho = new JsonObject();
                ho.addProperty("head", h);
                if (l.capture.hasHead(h)) {
                    int nr = l.capture.rows().length, n = l.capture.keys();
                    byte[] q = new byte[nr * n];
                    for (int r = 0; r < nr; r++) {
                        for (int j = 0; j < n; j++) q[r * n + j] = (byte) Math.round(Math.clamp(prob(l.capture, h, r, j), 0f, 1f) * 255);
                    }
                    ho.addProperty("map", Base64.getEncoder().encodeToString(q));
                }
                HeadSummary s = l.summaries[h];
                if (s != null) {
                    ho.addProperty("role", s.role().name());
                    ho.addProperty("describe", s.describe());
                    JsonObject st = new JsonObject();
                    st.addProperty("entropy (nats)", s.entropy());
                    st.addProperty("normalized entropy", s.normalizedEntropy());
                    st.addProperty("mean distance", s.distance());
                    st.addProperty("self", s.self());
                    st.addProperty("previous token", s.previous());
                    st.addProperty("next token", s.next());
                    st.addProperty("first token", s.first());
                    if (!Double.isNaN(s.delimiter())) st.addProperty("delimiters", s.delimiter());
                    st.addProperty("band |i-j|<=" + s.band(), s.bandMass());
                    st.addProperty("confidence (mean max)", s.confidence());
                    st.addProperty("argmax offset", s.argmaxOffset());
                    st.addProperty("argmax share", s.argmaxShare());
                    st.addProperty("top-" + s.topColumns() + " column share", s.columnConcentration());
                    if (!Double.isNaN(s.duplicateToken())) st.addProperty("duplicate-token", s.duplicateToken());
                    if (!Double.isNaN(s.induction())) st.addProperty("induction", s.induction());
                    ho.add("stats", st);
                    JsonArray roles = new JsonArray();
                    s.roles().forEach(r -> roles.add(shortRole(r)));
                    ho.add("roles", roles);
                }
                heads.add(ho);
            }
            lo.add("heads", heads);
            ls.add(lo);
        }
        data.add("layers", ls);
        String template;
        try (InputStream in = AttentionReport.class.getResourceAsStream("report.html")) {
            if (in == null) throw new IllegalStateException("report.html template missing from the jar");
            template = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        String json = data.toString().replace("</", "<\\/"); // never close the <script> early
        writeString(file, template.replace("/*DATA*/null", json).replace("{{TITLE}}", escape(title)));
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    private static void writeString(Path file, String s) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        Files.writeString(file, s);
    }
}
