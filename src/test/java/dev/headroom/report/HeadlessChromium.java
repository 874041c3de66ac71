package dev.headroom.report;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Debian's headless Chromium driven over the DevTools protocol with the JDK's own WebSocket
 * client: navigate, evaluate JavaScript, click at coordinates, take screenshots. Tests use it to
 * check that the HTML report renders and reacts. The browser is found at $HEADROOM_CHROMIUM or
 * /usr/bin/chromium (bin/test installs Debian's package when it is missing).
 */
final class HeadlessChromium implements AutoCloseable {
    private final Process process;
    private final Path profile;
    private final WebSocket socket;
    private final AtomicInteger ids = new AtomicInteger();
    private final Map<Integer, CompletableFuture<JsonObject>> pending = new ConcurrentHashMap<>();

    static Path executable() {
        String env = System.getenv("HEADROOM_CHROMIUM");
        for (String c : new String[]{env, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
            if (c != null && Files.isExecutable(Path.of(c))) return Path.of(c);
        }
        throw new IllegalStateException("no Chromium found at $HEADROOM_CHROMIUM or /usr/bin/chromium; bin/test installs "
                + "Debian's 'chromium' package, or run: sudo apt-get install chromium");
    }

    HeadlessChromium() throws Exception {
        profile = Files.createTempDirectory("headroom-chromium");
        // The flags the machine notes give for Chromium on this network: no background traffic.
        process = new ProcessBuilder(executable().toString(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-port=0", "--user-data-dir=" + profile, "--window-size=1400,1000",
                "about:blank").redirectErrorStream(true).start();
        String endpoint = null;
        BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        Pattern ws = Pattern.compile("DevTools listening on (ws://\\S+)");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        String line;
        StringBuilder log = new StringBuilder();
        while (endpoint == null && System.nanoTime() < deadline && (line = out.readLine()) != null) {
            log.append(line).append('\n');
            Matcher m = ws.matcher(line);
            if (m.find()) endpoint = m.group(1);
        }
        if (endpoint == null) {
            process.destroyForcibly();
            throw new IOException("Chromium did not report a DevTools endpoint:\n" + log);
        }
        Thread drain = new Thread(() -> {
            try {
                while (out.readLine() != null) {
                    // keep the pipe empty
                }
            } catch (IOException ignored) {
                // the browser exited
            }
        });
        drain.setDaemon(true);
        drain.start();
        URI browser = URI.create(endpoint);
        HttpClient http = HttpClient.newHttpClient();
        String list = http.send(HttpRequest.newBuilder(URI.create("http://" + browser.getAuthority() + "/json/list")).build(),
                HttpResponse.BodyHandlers.ofString()).body();
        String pageWs = null;
        for (JsonElement e : JsonParser.parseString(list).getAsJsonArray()) {
            JsonObject o = e.getAsJsonObject();
            if (o.get("type").getAsString().equals("page")) pageWs = o.get("webSocketDebuggerUrl").getAsString();
        }
        if (pageWs == null) throw new IOException("Chromium has no page target: " + list);
        socket = http.newWebSocketBuilder().buildAsync(URI.create(pageWs), new Listener()).get(30, TimeUnit.SECONDS);
    }

    private final class Listener implements WebSocket.Listener {
        private final StringBuilder partial = new StringBuilder();

        @Override
        public CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
            partial.append(data);
            if (last) {
                JsonObject msg = JsonParser.parseString(partial.toString()).getAsJsonObject();
                partial.setLength(0);
                if (msg.has("id")) {
                    CompletableFuture<JsonObject> f = pending.remove(msg.get("id").getAsInt());
                    if (f != null) f.complete(msg);
                }
            }
            ws.request(1);
            return null;
        }
    }

    /** Sends a DevTools command and returns its result, failing on a protocol error. */
    JsonObject call(String method, JsonObject params) throws Exception {
        int id = ids.incrementAndGet();
        CompletableFuture<JsonObject> f = new CompletableFuture<>();
        pending.put(id, f);
        JsonObject msg = new JsonObject();
        msg.addProperty("id", id);
        msg.addProperty("method", method);
        msg.add("params", params == null ? new JsonObject() : params);
        socket.sendText(msg.toString(), true).get(30, TimeUnit.SECONDS);
        JsonObject reply = f.get(60, TimeUnit.SECONDS);
        if (reply.has("error")) throw new IllegalStateException(method + " failed: " + reply.get("error"));
        return reply.getAsJsonObject("result");
    }

    /** Loads a page and waits until the document has loaded. */
    void open(Path file) throws Exception {
        JsonObject p = new JsonObject();
        p.addProperty("url", file.toUri().toString());
        call("Page.navigate", p);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!"complete".equals(evaluate("document.readyState").getAsString())) {
            if (System.nanoTime() > deadline) throw new IllegalStateException("page did not load: " + file);
            Thread.sleep(50);
        }
    }

    /** The value of a JavaScript expression (JSON-serialisable), failing on a thrown exception. */
    JsonElement evaluate(String expression) throws Exception {
        JsonObject p = new JsonObject();
        p.addProperty("expression", expression);
        p.addProperty("returnByValue", true);
        JsonObject r = call("Runtime.evaluate", p);
        if (r.has("exceptionDetails")) throw new IllegalStateException("JavaScript threw: " + r.get("exceptionDetails"));
        JsonObject result = r.getAsJsonObject("result");
        return result.has("value") ? result.get("value") : com.google.gson.JsonNull.INSTANCE;
    }

    /** A real mouse click (press and release) at page coordinates. */
    void click(double x, double y) throws Exception {
        for (String type : new String[]{"mousePressed", "mouseReleased"}) {
            JsonObject p = new JsonObject();
            p.addProperty("type", type);
            p.addProperty("x", x);
            p.addProperty("y", y);
            p.addProperty("button", "left");
            p.addProperty("clickCount", 1);
            call("Input.dispatchMouseEvent", p);
        }
    }

    /** Clicks the centre of the element a CSS selector finds. */
    void clickElement(String selector) throws Exception {
        JsonObject r = evaluate("(() => { const e = document.querySelector(" + com.google.gson.JsonParser.parseString("\"" + selector + "\"")
                + "); const b = e.getBoundingClientRect(); return {x: b.x + b.width / 2, y: b.y + b.height / 2}; })()").getAsJsonObject();
        click(r.get("x").getAsDouble(), r.get("y").getAsDouble());
    }

    /** A PNG screenshot of the viewport. */
    byte[] screenshot() throws Exception {
        return java.util.Base64.getDecoder().decode(call("Page.captureScreenshot", null).get("data").getAsString());
    }

    @Override
    public void close() throws IOException {
        try {
            socket.abort();
        } finally {
            process.destroy();
            try {
                if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            try (var walk = Files.walk(profile)) {
                walk.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
            }
        }
    }
}
