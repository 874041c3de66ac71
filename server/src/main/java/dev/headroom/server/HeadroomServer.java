package dev.headroom.server;

import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.headroom.generate.Generator;
import dev.headroom.serve.EmbeddingBatcher;
import dev.headroom.serve.Engine;
import dev.headroom.serve.QueueFullException;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * An OpenAI-compatible HTTP server over an {@link Engine} (text completion) and an
 * {@link EmbeddingBatcher} (embeddings): a thin layer that parses, validates, submits and
 * streams. Built on the JDK's {@code com.sun.net.httpserver.HttpServer} with one virtual thread
 * per exchange (see the README for why that is enough here).
 * <pre>
 *   POST /v1/completions   prompt (string, strings, token ids), max_tokens, temperature (0: greedy), top_p,
 *                          top_k, seed, stop, stream (server-sent events ending in data: [DONE]), stream_options
 *   POST /v1/embeddings    input (string or strings), encoding_format (float, base64), dimensions
 *   GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus text)
 * </pre>
 * Errors are OpenAI's body, {@code {"error": {"message", "type", "param", "code"}}}, with 400 for
 * bad requests, 404 for unknown models and paths, 405, 413 for bodies over the limit, and 503
 * with {@code Retry-After} when the queue is full.
 *
 * <p><b>Clients that go away.</b> A streaming client is noticed at the first write that fails (on
 * loopback the second write after it closed: the first one is taken by the kernel and answered
 * with a reset); its requests are cancelled and the engine frees their blocks before its next
 * step. A non-streaming response that takes longer than {@link Options#probeAfter} is sent
 * chunked, with a space (JSON allows leading white space) written every {@link Options#probeEvery}
 * of generation, so that a client that left is noticed there too.
 */
public final class HeadroomServer implements AutoCloseable {
    /** Bytes of an unread request body the server reads and discards so that its client gets the error (a 413). */
    static final long DRAIN_BYTES = 16L << 20;

    static {
        // The JDK's server leaves Nagle's algorithm on unless told (read once, when its ServerConfig loads): then each
        // small write of a stream waits for the client's delayed ACK of the one before, up to 40 ms on Linux, which
        // showed as a p99 time between tokens ten times the median. A server of token streams wants TCP_NODELAY.
        if (System.getProperty("sun.net.httpserver.nodelay") == null) System.setProperty("sun.net.httpserver.nodelay", "true");
        // A body refused unread (413 on its Content-Length) is drained when the exchange closes, but by default only its
        // first 64 KiB; past that the server closes the socket with the rest unread, the kernel answers with a reset, and
        // the client can lose the 413 to "connection reset" (HttpApiTest saw it once on a clean clone). Draining up to
        // DRAIN_BYTES gives such clients their answer; a larger body still gets the reset, so the work stays bounded.
        if (System.getProperty("sun.net.httpserver.drainAmount") == null) {
            System.setProperty("sun.net.httpserver.drainAmount", Long.toString(DRAIN_BYTES));
        }
    }

    /**
     * Limits and timings of the HTTP layer.
     *
     * @param maxBodyBytes larger request bodies get 413
     * @param probeAfter   a non-streaming completion that has not finished by then is answered chunked, with probes
     * @param probeEvery   at most one probe (a space) per this interval while tokens are generated
     */
    public record Options(int maxBodyBytes, Duration probeAfter, Duration probeEvery) {
        public static Options defaults() {
            return new Options(1 << 20, Duration.ofMillis(250), Duration.ofMillis(50));
        }
    }

    private final HttpServer http;
    private final ExecutorService executor;
    private final Engine engine;
    private final String completionModel;
    private final EmbeddingBatcher embeddings;
    private final String embeddingModel;
    private final int dimensions;
    private final Options options;
    private final ServerMetrics metrics;
    private final long created = System.currentTimeMillis() / 1000;
    private final AtomicLong ids = new AtomicLong();
    private volatile boolean closed;
    /** Also told of every engine step (serve-bench's step times), on the engine thread. */
    private volatile Consumer<Engine.StepInfo> stepTap = step -> {};

    private HeadroomServer(HttpServer http, Engine engine, String completionModel, EmbeddingBatcher embeddings, String embeddingModel,
                           Options options) {
        this.http = http;
        this.engine = engine;
        this.completionModel = completionModel;
        this.embeddings = embeddings;
        this.embeddingModel = embeddingModel;
        this.dimensions = embeddings.encoder().config().hidden();
        this.options = options;
        this.metrics = new ServerMetrics(engine, embeddings);
        engine.setStepObserver(step -> {
            metrics.step(step);
            stepTap.accept(step);
        });
        this.executor = Executors.newVirtualThreadPerTaskExecutor();
        http.setExecutor(executor);
        http.createContext("/", this::handle);
    }

    /**
     * Binds {@code address} and serves {@code engine} as model {@code completionModel} and
     * {@code embeddings} as {@code embeddingModel}. The engine and batcher stay the caller's: close
     * them after this server.
     */
    public static HeadroomServer start(InetSocketAddress address, Engine engine, String completionModel, EmbeddingBatcher embeddings,
                                       String embeddingModel, Options options) throws IOException {
        HttpServer http = HttpServer.create(address, 0);
        HeadroomServer s = new HeadroomServer(http, engine, completionModel, embeddings, embeddingModel, options);
        http.start();
        return s;
    }

    public InetSocketAddress address() {
        return http.getAddress();
    }

    /** http://host:port/v1 (what an OpenAI client takes as its base URL). */
    public URI baseUri() {
        InetSocketAddress a = http.getAddress();
        String host = a.getAddress().isAnyLocalAddress() ? "127.0.0.1" : a.getAddress().getHostAddress();
        if (host.contains(":")) host = "[" + host + "]";
        return URI.create("http://" + host + ":" + a.getPort() + "/v1");
    }

    // ---- routing ------------------------------------------------------------------------

    /** Status codes a response can end with beside HTTP's: the client went away before it was complete (nginx's 499). */
    private static final int CLIENT_GONE = 499;

    private void handle(HttpExchange ex) {
        long t0 = System.nanoTime();
        String path = ex.getRequestURI().getPath(), method = ex.getRequestMethod();
        String endpoint = switch (path) {
            case "/v1/completions" -> "completions";
            case "/v1/embeddings" -> "embeddings";
            case "/health" -> "health";
            case "/metrics" -> "metrics";
            default -> path.equals("/v1/models") || path.startsWith("/v1/models/") ? "models" : "other";
        };
        Response r = new Response(ex);
        try {
            switch (endpoint) {
                case "completions" -> { allow(r, "POST"); completions(r, t0); }
                case "embeddings" -> { allow(r, "POST"); embeddings(r); }
                case "models" -> { allow(r, "GET"); models(r, path); }
                case "health" -> { allow(r, "GET"); health(r); }
                case "metrics" -> { allow(r, "GET"); metrics(r); }
                default -> throw ApiException.notFound("no endpoint " + method + " " + path + "; this server has POST /v1/completions, "
                        + "POST /v1/embeddings, GET /v1/models, GET /health and GET /metrics", null, "not_found");
            }
        } catch (ApiException e) {
            r.error(e);
        } catch (IOException e) {
            r.gone = true;
        } catch (RuntimeException e) {
            // A bug of this server, not of the request: the client gets a 500 with the message, the server goes on.
            System.err.println("headroom serve: " + method + " " + path + " failed: " + e);
            r.error(new ApiException(500, "server_error", "internal error: " + e, null, null, 0));
        } finally {
            ex.close();
        }
        int code = r.gone ? CLIENT_GONE : r.status;
        metrics.requests.labelValues(endpoint, Integer.toString(code)).inc();
        if (!endpoint.equals("other")) metrics.requestDuration.labelValues(endpoint).observe((System.nanoTime() - t0) / 1e9);
    }

    private static void allow(Response r, String allowed) {
        String method = r.ex.getRequestMethod();
        if (method.equals(allowed)) return;
        if (method.equals("HEAD") && allowed.equals("GET")) return;
        r.ex.getResponseHeaders().set("Allow", allowed.equals("GET") ? "GET, HEAD" : allowed);
        throw new ApiException(405, "invalid_request_error", "method " + method + " is not allowed here; use " + allowed, null,
                "method_not_allowed", 0);
    }

    /** One exchange's response state: whether headers went out, with which status, and whether the client left. */
    private static final class Response {
        final HttpExchange ex;
        boolean committed, gone;
        int status = 500;

        Response(HttpExchange ex) {
            this.ex = ex;
        }

        void json(int code, String body) throws IOException {
            byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().set("Content-Type", "application/json");
            send(code, bytes);
        }

        void send(int code, byte[] bytes) throws IOException {
            status = code;
            committed = true;
            boolean head = ex.getRequestMethod().equals("HEAD");
            ex.sendResponseHeaders(code, head ? -1 : bytes.length == 0 ? -1 : bytes.length);
            if (!head && bytes.length > 0) {
                try (OutputStream out = ex.getResponseBody()) {
                    out.write(bytes);
                }
            }
        }

        /** Sends the error, unless headers already went out (then the stream's own error path has run). */
        void error(ApiException e) {
            if (committed) return;
            try {
                if (e.retryAfter > 0) ex.getResponseHeaders().set("Retry-After", Integer.toString(e.retryAfter));
                json(e.status, e.body().toString());
            } catch (IOException io) {
                gone = true;
            }
        }
    }

    private byte[] body(HttpExchange ex) throws IOException {
        String length = ex.getRequestHeaders().getFirst("Content-Length");
        if (length != null) {
            long n;
            try {
                n = Long.parseLong(length.trim());
            } catch (NumberFormatException e) {
                throw ApiException.invalid("Content-Length '" + length + "' is not a number", null);
            }
            if (n > options.maxBodyBytes()) throw tooLarge(n);
        }
        InputStream in = ex.getRequestBody();
        byte[] bytes = in.readNBytes(options.maxBodyBytes() + 1);
        if (bytes.length > options.maxBodyBytes()) throw tooLarge(-1);
        return bytes;
    }

    private ApiException tooLarge(long n) {
        return new ApiException(413, "invalid_request_error", "the request body " + (n >= 0 ? "has " + n + " bytes" : "is larger than the limit")
                + "; at most " + options.maxBodyBytes() + " bytes are accepted", null, "request_too_large", 0);
    }

    // ---- /v1/completions ------------------------------------------------------------------

    /** What the engine tells one choice, handed from the engine thread to the exchange's thread. */
    private sealed interface Event {
        int choice();
    }

    private record Queued(int choice, int position) implements Event {}

    private record Token(int choice, String text) implements Event {}

    private record Finished(int choice, Generator.Output output, Engine.Usage usage) implements Event {}

    private record Failed(int choice, RuntimeException error) implements Event {}

    /** One choice's listener: queues its events and times its tokens. Called on the engine thread: never blocks. */
    private final class ChoiceListener implements Engine.Listener {
        final int choice;
        final BlockingQueue<Event> events;
        final long t0;
        long last;

        ChoiceListener(int choice, BlockingQueue<Event> events, long t0) {
            this.choice = choice;
            this.events = events;
            this.t0 = t0;
        }

        @Override
        public void queued(int position) {
            events.add(new Queued(choice, position));
        }

        @Override
        public void token(int token, String text) {
            if (token >= 0) {
                long now = System.nanoTime();
                if (last == 0) metrics.timeToFirstToken.observe((now - t0) / 1e9);
                else metrics.interTokenLatency.observe((now - last) / 1e9);
                last = now;
            }
            events.add(new Token(choice, text));
        }

        @Override
        public void finished(Generator.Output output, Engine.Usage usage) {
            events.add(new Finished(choice, output, usage));
        }

        @Override
        public void failed(RuntimeException error) {
            events.add(new Failed(choice, error));
        }
    }

    private void completions(Response r, long t0) throws IOException {
        Requests.Completion c = Requests.completion(Requests.object(body(r.ex)), completionModel, engine.tokenizer());
        int context = engine.modelConfig().maxPositions();
        List<Generator.Request> requests = new ArrayList<>();
        for (int i = 0; i < c.prompts().size(); i++) {
            int[] p = c.prompts().get(i);
            if (p.length >= context) {
                throw new ApiException(400, "invalid_request_error", (c.prompts().size() > 1 ? "prompt " + i : "the prompt") + " has "
                        + p.length + " tokens; the model's context is " + context + " tokens, which leaves no room to generate",
                        "prompt", "context_length_exceeded", 0);
            }
            requests.add(new Generator.Request(p, c.maxTokens(), c.sampling(), c.stops()));
        }
        BlockingQueue<Event> events = new LinkedBlockingQueue<>();
        List<Engine.Listener> listeners = new ArrayList<>();
        for (int i = 0; i < requests.size(); i++) listeners.add(new ChoiceListener(i, events, t0));
        List<Engine.Handle> handles;
        try {
            handles = engine.submitAll(requests, listeners);
        } catch (QueueFullException e) {
            throw new ApiException(503, "server_error", e.getMessage(), null, "queue_full", 1);
        } catch (IllegalArgumentException e) {
            throw ApiException.invalid(e.getMessage(), "prompt");
        } catch (IllegalStateException e) {
            throw new ApiException(503, "server_error", "the server is shutting down", null, "shutting_down", 1);
        }
        String id = "cmpl-" + Long.toHexString(created) + Long.toHexString(ids.incrementAndGet());
        try {
            if (c.stream()) stream(r, c, id, events, requests.size());
            else whole(r, c, id, events, requests.size());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            r.gone = true;
        } finally {
            for (Engine.Handle h : handles) h.cancel(); // a no-op for finished ones; frees the rest when the client left or failed
        }
    }

    private static String finishReason(Generator.Finish f) {
        return switch (f) {
            case EOS, STOP_STRING -> "stop";
            case MAX_TOKENS, CONTEXT -> "length";
        };
    }

    private JsonObject chunk(String id, String object) {
        JsonObject o = new JsonObject();
        o.addProperty("id", id);
        o.addProperty("object", object);
        o.addProperty("created", System.currentTimeMillis() / 1000);
        o.addProperty("model", completionModel);
        return o;
    }

    private static JsonObject choice(int index, String text, String finish) {
        JsonObject ch = new JsonObject();
        ch.addProperty("text", text);
        ch.addProperty("index", index);
        ch.add("logprobs", JsonNull.INSTANCE);
        if (finish == null) ch.add("finish_reason", JsonNull.INSTANCE);
        else ch.addProperty("finish_reason", finish);
        return ch;
    }

    private static JsonObject usage(int prompt, int completion, int cached) {
        JsonObject u = new JsonObject();
        u.addProperty("prompt_tokens", prompt);
        u.addProperty("completion_tokens", completion);
        u.addProperty("total_tokens", prompt + completion);
        JsonObject details = new JsonObject();
        details.addProperty("cached_tokens", cached);
        u.add("prompt_tokens_details", details);
        return u;
    }

    /** Server-sent events: a chunk per piece of text, a last chunk per choice with its finish reason, usage if asked, [DONE]. */
    private void stream(Response r, Requests.Completion c, String id, BlockingQueue<Event> events, int choices)
            throws IOException, InterruptedException {
        HttpExchange ex = r.ex;
        ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.getResponseHeaders().set("X-Accel-Buffering", "no"); // a proxy in front must not buffer the stream
        ex.sendResponseHeaders(200, 0);
        r.committed = true;
        r.status = 200;
        OutputStream out = ex.getResponseBody();
        int open = choices, prompt = 0, completion = 0, cached = 0;
        List<Event> batch = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        while (open > 0) {
            batch.clear();
            batch.add(events.take());
            events.drainTo(batch);
            text.setLength(0);
            for (Event e : batch) {
                switch (e) {
                    case Queued q -> text.append(": queued, position ").append(q.position()).append("\n\n");
                    case Token t -> {
                        if (!t.text().isEmpty()) {
                            JsonObject o = chunk(id, "text_completion");
                            JsonArray a = new JsonArray();
                            a.add(choice(t.choice(), t.text(), null));
                            o.add("choices", a);
                            text.append("data: ").append(o).append("\n\n");
                        }
                    }
                    case Finished f -> {
                        open--;
                        prompt += f.usage().promptTokens();
                        completion += f.usage().completionTokens();
                        cached += f.usage().cachedPromptTokens();
                        JsonObject o = chunk(id, "text_completion");
                        JsonArray a = new JsonArray();
                        a.add(choice(f.choice(), "", finishReason(f.output().finish())));
                        o.add("choices", a);
                        text.append("data: ").append(o).append("\n\n");
                    }
                    case Failed f -> {
                        open--;
                        ApiException err = new ApiException(500, "server_error", "generation failed: " + f.error().getMessage(), null, null, 0);
                        text.append("event: error\ndata: ").append(err.body()).append("\n\n");
                    }
                }
            }
            if (!text.isEmpty()) {
                out.write(text.toString().getBytes(StandardCharsets.UTF_8));
                out.flush();
            }
        }
        StringBuilder end = new StringBuilder();
        if (c.includeUsage()) {
            JsonObject o = chunk(id, "text_completion");
            o.add("choices", new JsonArray());
            o.add("usage", usage(prompt, completion, cached));
            end.append("data: ").append(o).append("\n\n");
        }
        end.append("data: [DONE]\n\n");
        out.write(end.toString().getBytes(StandardCharsets.UTF_8));
        out.close();
    }

    /** One JSON response when every choice is done; past {@link Options#probeAfter}, sent chunked with probes. */
    private void whole(Response r, Requests.Completion c, String id, BlockingQueue<Event> events, int choices)
            throws IOException, InterruptedException {
        HttpExchange ex = r.ex;
        Generator.Output[] outputs = new Generator.Output[choices];
        Engine.Usage[] usages = new Engine.Usage[choices];
        RuntimeException failure = null;
        long probeStart = System.nanoTime() + options.probeAfter().toNanos(), lastProbe = 0;
        OutputStream out = null;
        int open = choices;
        while (open > 0) {
            Event e = out == null ? events.poll(Math.max(1, probeStart - System.nanoTime()), TimeUnit.NANOSECONDS) : events.take();
            if (out == null && System.nanoTime() >= probeStart) {
                ex.getResponseHeaders().set("Content-Type", "application/json");
                ex.sendResponseHeaders(200, 0);
                r.committed = true;
                r.status = 200;
                out = ex.getResponseBody();
            }
            if (e == null) continue;
            switch (e) {
                case Finished f -> {
                    outputs[f.choice()] = f.output();
                    usages[f.choice()] = f.usage();
                    open--;
                }
                case Failed f -> {
                    failure = f.error();
                    open--;
                }
                case Token t -> {
                    long now = System.nanoTime();
                    if (out != null && now - lastProbe >= options.probeEvery().toNanos()) {
                        out.write(' ');
                        out.flush();
                        lastProbe = now;
                    }
                }
                case Queued q -> { }
            }
        }
        String body;
        if (failure != null) {
            ApiException err = new ApiException(500, "server_error", "generation failed: " + failure.getMessage(), null, null, 0);
            if (out == null) throw err;
            body = err.body().toString(); // headers went out with 200: the body says what happened
        } else {
            JsonObject o = chunk(id, "text_completion");
            JsonArray a = new JsonArray();
            int prompt = 0, completion = 0, cached = 0;
            for (int i = 0; i < choices; i++) {
                a.add(choice(i, outputs[i].text(), finishReason(outputs[i].finish())));
                prompt += usages[i].promptTokens();
                completion += usages[i].completionTokens();
                cached += usages[i].cachedPromptTokens();
            }
            o.add("choices", a);
            o.add("usage", usage(prompt, completion, cached));
            body = o.toString();
        }
        if (out == null) {
            r.json(200, body);
        } else {
            out.write(body.getBytes(StandardCharsets.UTF_8));
            out.close();
        }
    }

    // ---- /v1/embeddings -------------------------------------------------------------------

    private void embeddings(Response r) throws IOException {
        Requests.Embeddings e = Requests.embeddings(Requests.object(body(r.ex)), embeddingModel, dimensions);
        int tokens = 0;
        for (String s : e.inputs()) tokens += embeddings.tokens(s);
        metrics.embeddingBatchSize.observe(e.inputs().size());
        float[][] vectors;
        try {
            vectors = embeddings.embed(e.inputs());
        } catch (QueueFullException q) {
            throw new ApiException(503, "server_error", q.getMessage(), null, "queue_full", 1);
        } catch (IllegalStateException q) {
            throw new ApiException(503, "server_error", "the server is shutting down", null, "shutting_down", 1);
        } catch (InterruptedException q) {
            Thread.currentThread().interrupt();
            throw new ApiException(503, "server_error", "the server is shutting down", null, "shutting_down", 1);
        }
        // Written by hand: 384 floats per input, each as Float.toString (the shortest decimal that reads back as the same float).
        StringBuilder b = new StringBuilder(64 + vectors.length * (e.base64() ? 2100 : 4300));
        b.append("{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < vectors.length; i++) {
            if (i > 0) b.append(',');
            b.append("{\"object\":\"embedding\",\"index\":").append(i).append(",\"embedding\":");
            if (e.base64()) {
                ByteBuffer bytes = ByteBuffer.allocate(vectors[i].length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
                for (float v : vectors[i]) bytes.putFloat(v);
                b.append('"').append(Base64.getEncoder().encodeToString(bytes.array())).append('"');
            } else {
                b.append('[');
                for (int j = 0; j < vectors[i].length; j++) {
                    if (j > 0) b.append(',');
                    b.append(vectors[i][j]);
                }
                b.append(']');
            }
            b.append('}');
        }
        b.append("],\"model\":\"").append(embeddingModel).append("\",\"usage\":{\"prompt_tokens\":").append(tokens)
                .append(",\"total_tokens\":").append(tokens).append("}}");
        r.json(200, b.toString());
    }

    // ---- the rest -------------------------------------------------------------------------

    private JsonObject model(String id) {
        JsonObject m = new JsonObject();
        m.addProperty("id", id);
        m.addProperty("object", "model");
        m.addProperty("created", created);
        m.addProperty("owned_by", "headroom");
        return m;
    }

    private void models(Response r, String path) throws IOException {
        if (path.startsWith("/v1/models/")) {
            String id = path.substring("/v1/models/".length());
            if (!id.equals(completionModel) && !id.equals(embeddingModel)) {
                throw ApiException.notFound("the model '" + id + "' does not exist; this server has '" + completionModel + "' and '"
                        + embeddingModel + "'", "model", "model_not_found");
            }
            r.json(200, model(id).toString());
            return;
        }
        JsonObject o = new JsonObject();
        o.addProperty("object", "list");
        JsonArray data = new JsonArray();
        data.add(model(completionModel));
        data.add(model(embeddingModel));
        o.add("data", data);
        r.json(200, o.toString());
    }

    private void health(Response r) throws IOException {
        if (closed || !engine.isRunning()) {
            throw new ApiException(503, "server_error", closed ? "the server is shutting down" : "the engine is not running", null,
                    closed ? "shutting_down" : "engine_stopped", 1);
        }
        Engine.Snapshot s = engine.snapshot();
        JsonObject o = new JsonObject();
        o.addProperty("status", "ok");
        o.addProperty("running", s.running());
        o.addProperty("waiting", s.waiting());
        r.json(200, o.toString());
    }

    private void metrics(Response r) throws IOException {
        java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
        metrics.write(bytes);
        r.ex.getResponseHeaders().set("Content-Type", metrics.contentType());
        r.send(200, bytes.toByteArray());
    }

    /** Tells {@code tap} of every engine step from now on (null: no one), on the engine thread: it must return at once. */
    void tapSteps(Consumer<Engine.StepInfo> tap) {
        stepTap = tap == null ? step -> {} : tap;
    }

    /** Stops accepting connections and ends those open (streams are cut); the engine and batcher stay the caller's. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        engine.setStepObserver(null);
        http.stop(0);
        executor.shutdownNow();
    }
}
