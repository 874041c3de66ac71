package dev.headroom.report;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.headroom.attention.Mask;
import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.attention.Workspace;
import dev.headroom.inspect.AttentionCapture;
import dev.headroom.inspect.HeadStatistics;
import dev.headroom.inspect.Inspection;
import dev.headroom.inspect.InspectionTestSupport;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AttentionReportTest {
    @TempDir
    static Path dir;
    static AttentionReport report;
    static final int N = 12;
    static final List<String> TOKENS = List.of("[CLS]", "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", ".", "[SEP]");

    /** Two layers of the four constructed heads (previous, self, first, uniform); layer 1 causal. */
    @BeforeAll
    static void build() throws Exception {
        System.setProperty("java.awt.headless", "true");
        List<AttentionReport.Layer> layers = new ArrayList<>();
        try (Arena arena = TrackedArena.ofShared();
             MultiHeadAttention mha = InspectionTestSupport.constructedHeads(arena, N, MultiHeadAttention.Options.defaults())) {
            Tensor x = InspectionTestSupport.oneHotPositions(arena, N);
            for (Mask mask : List.of(Mask.none(), Mask.causal())) {
                HeadStatistics stats = new HeadStatistics(4, HeadStatistics.Options.defaults().withDelimiters(new int[][]{{0, 10, 11}}));
                AttentionCapture cap = AttentionCapture.allRows(Arena.ofAuto(), 1, 4, new int[]{0, 1, 2, 3}, N, N);
                mha.forward(x, null, mask, Tensor.allocate(arena, x.shape()), new Workspace(), new Inspection(cap, stats, null));
                layers.add(new AttentionReport.Layer(cap, stats.summaries()));
            }
        }
        report = new AttentionReport("constructed heads", TOKENS, layers);
    }

    @Test
    void headHeatmapPutsTheDarkestCellWhereTheHeadLooks() throws Exception {
        Path png = dir.resolve("head.png");
        report.writeHeadPng(png, 0, 0); // previous-token head
        BufferedImage img = ImageIO.read(png.toFile());
        assertTrue(img.getWidth() > 300 && img.getHeight() > 300, img.getWidth() + "×" + img.getHeight());
        Path grid = dir.resolve("grid.png");
        report.writeGridPng(grid);
        BufferedImage g = ImageIO.read(grid.toFile());
        assertTrue(g.getWidth() >= 4 * 120 && g.getHeight() >= 2 * 120);
        // thumbnail of layer 0, head 1 (self): the diagonal is dark, the corner opposite it light
        int x0 = 60 + (120 + 8), y0 = 40;
        int nearDiag = g.getRGB(x0 + 5, y0 + 5) >> 16 & 0xff, offDiag = g.getRGB(x0 + 115, y0 + 5) >> 16 & 0xff;
        assertTrue(nearDiag < 60 && offDiag > 240, "red channel on/off the diagonal: " + nearDiag + ", " + offDiag);
    }

    @Test
    void bertVizJsonHasLayersHeadsRowsKeysAndTokens() throws Exception {
        Path json = dir.resolve("attention.json");
        report.writeBertVizJson(json);
        JsonObject o = JsonParser.parseString(Files.readString(json)).getAsJsonObject();
        assertEquals(N, o.getAsJsonArray("tokens").size());
        JsonArray att = o.getAsJsonArray("attention");
        assertEquals(2, att.size());
        assertEquals(4, att.get(0).getAsJsonArray().size());
        JsonArray row5 = att.get(0).getAsJsonArray().get(0).getAsJsonArray().get(5).getAsJsonArray();
        assertEquals(N, row5.size());
        assertTrue(row5.get(4).getAsDouble() > 0.99, "previous-token head, row 5 → key 4: " + row5);
        Path csv = dir.resolve("stats.csv");
        report.writeStatisticsCsv(csv);
        List<String> lines = Files.readAllLines(csv);
        assertEquals(1 + 2 * 4, lines.size());
        assertTrue(lines.get(1).startsWith("0,0,PREVIOUS_TOKEN,"), lines.get(1));
        report.writeStatisticsJson(dir.resolve("stats.json"));
        assertTrue(Files.readString(dir.resolve("stats.json")).contains("\"role\": \"SELF\""));
    }

    @Test
    void htmlReportRendersInHeadlessChromiumAndFollowsClicks() throws Exception {
        Path html = dir.resolve("report.html");
        report.writeHtml(html);
        String page = Files.readString(html);
        assertTrue(!page.contains("http://") && !page.contains("https://") && !page.contains("src="),
                "the report must work offline: no external resources");
        try (HeadlessChromium chrome = new HeadlessChromium()) {
            chrome.open(html);
            String heatmap = "(() => { const c = document.getElementById('heatmap'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                    + " let dark = 0, h = 0; for (let i = 0; i < d.length; i += 4) { if (d[i] < 128) dark++; h = (h * 31 + d[i] + 7 * d[i + 2]) | 0; } return dark + ':' + h; })()";
            String first = chrome.evaluate(heatmap).getAsString();
            assertTrue(Integer.parseInt(first.split(":")[0]) > 1000, "the heatmap is drawn: " + first);
            assertTrue(chrome.evaluate("document.querySelectorAll('#stats tr').length").getAsInt() > 8, "statistics are shown");
            assertTrue(chrome.evaluate("document.getElementById('describe').textContent").getAsString().contains("PREVIOUS_TOKEN"));
            int linesBefore = chrome.evaluate("(() => { const d = document.getElementById('lines').getContext('2d').getImageData(0,0,420,520).data; let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++; return k; })()").getAsInt();
            assertTrue(linesBefore > 500, "token-to-token lines are drawn: " + linesBefore);

            chrome.clickElement("#head-2");                  // the first-token head
            String afterHead = chrome.evaluate(heatmap).getAsString();
            assertNotEquals(first, afterHead, "choosing another head redraws the heatmap");
            assertTrue(chrome.evaluate("document.getElementById('describe').textContent").getAsString().contains("head 2: FIRST_TOKEN"));
            assertEquals("#layer=0&head=2", chrome.evaluate("location.hash").getAsString());

            chrome.clickElement("#head-3");                  // the uniform head...
            String uniform = chrome.evaluate(heatmap).getAsString();
            chrome.clickElement("#layer-1");                 // ...in the causal layer is triangular
            assertNotEquals(uniform, chrome.evaluate(heatmap).getAsString(), "choosing another layer redraws it");
            assertEquals("#layer=1&head=3", chrome.evaluate("location.hash").getAsString());
            BufferedImage shot = ImageIO.read(new ByteArrayInputStream(chrome.screenshot()));
            assertTrue(shot.getWidth() >= 1000);
            ImageIO.write(shot, "png", dir.resolve("screenshot.png").toFile());
        }
    }
}
