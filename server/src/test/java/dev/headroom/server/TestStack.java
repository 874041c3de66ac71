package dev.headroom.server;

import dev.headroom.attention.MultiHeadAttention;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.Models;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.serve.EmbeddingBatcher;
import dev.headroom.serve.Engine;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/**
 * The models, loaded once for every test class of this JVM (loading them is most of a test's
 * time), and servers over them on 127.0.0.1 with an engine of the test's own settings.
 */
final class TestStack {
    static final LlamaModel DECODER;
    static final ByteTokenizer TOKENIZER;
    static final MiniLmEncoder ENCODER;

    static {
        try {
            DECODER = Models.tiny(MultiHeadAttention.Options.defaults().withThreads(2));
            TOKENIZER = ByteTokenizer.of(DECODER.config());
            ENCODER = Models.minilm(TrackedArena.ofShared(), 2); // its arena lives as long as the test JVM
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private TestStack() {}

    /** A server with its own engine and batcher; closing it closes all three (the models stay). */
    static final class Server implements AutoCloseable {
        final Engine engine;
        final EmbeddingBatcher batcher;
        final HeadroomServer http;
        final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();

        Server(Engine.Config config) throws IOException {
            engine = Engine.start(DECODER, TOKENIZER, config);
            batcher = new EmbeddingBatcher(ENCODER, Duration.ofMillis(2), 4096);
            http = HeadroomServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), engine, "tiny", batcher, "minilm",
                    HeadroomServer.Options.defaults());
        }

        /** http://127.0.0.1:port/v1 */
        String base() {
            return http.baseUri().toString();
        }

        URI uri(String path) {
            return URI.create("http://127.0.0.1:" + http.address().getPort() + path);
        }

        HttpResponse<String> post(String path, String body) throws IOException, InterruptedException {
            return client.send(HttpRequest.newBuilder(uri(path)).POST(HttpRequest.BodyPublishers.ofString(body))
                    .header("Content-Type", "application/json").timeout(Duration.ofSeconds(120)).build(), HttpResponse.BodyHandlers.ofString());
        }

        HttpResponse<String> get(String path) throws IOException, InterruptedException {
            return client.send(HttpRequest.newBuilder(uri(path)).GET().timeout(Duration.ofSeconds(60)).build(),
                    HttpResponse.BodyHandlers.ofString());
        }

        @Override
        public void close() {
            http.close();
            batcher.close();
            engine.close();
            client.close();
        }
    }
}
