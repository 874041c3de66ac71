package dev.headroom.server;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * serve-bench's client against a hand-written server on loopback that answers with exactly the
 * bytes a case needs: a chunked stream whose lines are split across chunks and sent with pauses
 * (the client must see each line when it arrives, not when the body ends), a 503 with a sized
 * body, and broken framing, which must be an {@link IOException} that says what was wrong.
 */
class StreamingClientTest {
    private static final String BODY = "{\"model\": \"tiny\", \"prompt\": \"A\", \"stream\": true}";

    /** Accepts one connection, reads the request's head, writes each part after a pause of {@code pauseMillis}, closes. */
    private static CompletableFuture<String> serveOnce(ServerSocket server, List<String> parts, long pauseMillis) {
        return CompletableFuture.supplyAsync(() -> {
            try (Socket s = server.accept()) {
                InputStream in = s.getInputStream();
                StringBuilder head = new StringBuilder();
                while (!head.toString().endsWith("\r\n\r\n")) {
                    int c = in.read();
                    if (c < 0) throw new IOException("the client closed inside the request's head");
                    head.append((char) c);
                }
                OutputStream out = s.getOutputStream();
                for (String part : parts) {
                    Thread.sleep(pauseMillis);
                    out.write(part.getBytes(StandardCharsets.UTF_8));
                    out.flush();
                }
                return head.toString();
            } catch (IOException | InterruptedException e) {
                throw new RuntimeException(e);
            }
        });
    }

    private static String chunk(String data) {
        return Integer.toHexString(data.getBytes(StandardCharsets.UTF_8).length) + "\r\n" + data + "\r\n";
    }

    private static URI base(ServerSocket server) {
        return URI.create("http://127.0.0.1:" + server.getLocalPort());
    }

    @Test
    void itSeesEachLineWhenItArrivesThroughChunksThatSplitLines() throws Exception {
        String first = "data: {\"choices\": [{\"index\": 0, \"text\": \"He\"}]}\n\n";
        String second = "data: {\"choices\": [{\"index\": 0, \"text\": \"llo\"}]}\n\n";
        String usage = "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 2, \"completion_tokens\": 2}}\n\ndata: [DONE]\n\n";
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            CompletableFuture<String> request = serveOnce(server, List.of(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + chunk(first.substring(0, 20)), // the first line split across two chunks
                    chunk(first.substring(20)) + chunk(": a comment line\n\n"),
                    chunk(second) + chunk(usage) + "0\r\n\r\n"), 300);
            StreamingClient.Sample s = StreamingClient.stream(base(server), BODY, 10_000);
            assertEquals(2, s.tokens());
            assertEquals(1, s.itlMs().length);
            // the second text came 300 ms after the first: a client that waited for the whole body would see no gap
            assertTrue(s.itlMs()[0] > 100, "gap " + s.itlMs()[0] + " ms");
            assertTrue(s.ttftMs() > 500, "time to first token " + s.ttftMs() + " ms"); // two pauses before the first line ended
            String head = request.get(10, TimeUnit.SECONDS);
            assertTrue(head.startsWith("POST /v1/completions HTTP/1.1\r\n"), head);
            assertTrue(head.contains("Content-Length: " + BODY.length() + "\r\n"), head);
        }
    }

    @Test
    void aRefusalIsNullAndOtherStatusesAndBrokenFramingSayWhatWasWrong() throws Exception {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            String busy = "{\"error\": {\"code\": \"queue_full\"}}";
            serveOnce(server, List.of("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: " + busy.length()
                    + "\r\n\r\n" + busy), 0);
            assertNull(StreamingClient.stream(base(server), BODY, 10_000));

            String bad = "{\"error\": {\"message\": \"max_tokens must be >= 1\"}}";
            serveOnce(server, List.of("HTTP/1.1 400 Bad Request\r\nContent-Length: " + bad.length() + "\r\n\r\n" + bad), 0);
            IOException e = assertThrows(IOException.class, () -> StreamingClient.stream(base(server), BODY, 10_000));
            assertEquals("HTTP 400: " + bad, e.getMessage());

            serveOnce(server, List.of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\ndata: [DO"), 0);
            e = assertThrows(IOException.class, () -> StreamingClient.stream(base(server), BODY, 10_000));
            assertEquals("the connection closed inside a chunk", e.getMessage());

            serveOnce(server, List.of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 0);
            e = assertThrows(IOException.class, () -> StreamingClient.stream(base(server), BODY, 10_000));
            assertEquals("a chunk size that is not hexadecimal: \"zz\"", e.getMessage());

            serveOnce(server, List.of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("data: [DONE]\n\n") + "0\r\n\r\n"), 0);
            e = assertThrows(IOException.class, () -> StreamingClient.stream(base(server), BODY, 10_000));
            assertEquals("the stream ended without its usage chunk", e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> StreamingClient.stream(URI.create("https://127.0.0.1:1"), BODY, 1000));
    }
}
