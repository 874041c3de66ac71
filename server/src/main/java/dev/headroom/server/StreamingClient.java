package dev.headroom.server;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.BufferedInputStream;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * serve-bench's streaming client: one {@code POST /v1/completions} with {@code stream: true} over a
 * plain socket (HTTP/1.1, one connection per request, a chunked or sized body), read on the calling
 * thread to {@code data: [DONE]}.
 *
 * <p>Why not {@code java.net.http.HttpClient}, which serve-bench used before (and the tests and
 * the embeddings load still use): the load shares the machine's cores with the server, and
 * HttpClient hands every chunk from its selector thread to a worker thread, and from there to the
 * thread that reads it. At 32 streams its two threads held 13 % of the process's CPU samples (perf,
 * AMD EPYC Zen 5, 2 cores), beside the virtual threads that read. Here a chunk costs one read by the
 * thread waiting for it. What the client measures is unchanged: the request's completion tokens (from
 * the usage chunk), the time from sending to the first chunk with text, and the gaps between chunks
 * with text. The HTTP it speaks is the little this server answers with: a status line, headers, and
 * {@code Transfer-Encoding: chunked} or {@code Content-Length}; plain {@code http://} only. It
 * opens a connection per request (HttpClient kept them open), so the time to first token now
 * includes a connect on loopback, tens of microseconds against milliseconds.
 */
final class StreamingClient {
    /** One request's client-side timings: its completion tokens, time to first text, each gap between texts. */
    record Sample(long tokens, double ttftMs, double[] itlMs) {}

    private StreamingClient() {}

    /**
     * Sends {@code body} to {@code base}'s /v1/completions and reads the stream to its end.
     *
     * @return the request's timings; null when the server refused it with 503 (its queue was full)
     * @throws IOException another status (with the body it sent), a stream that ends early or without its usage chunk
     */
    static Sample stream(URI base, String body, int timeoutMillis) throws IOException {
        if (!"http".equalsIgnoreCase(base.getScheme())) {
            throw new IllegalArgumentException("serve-bench's client speaks plain HTTP: an http:// URL, not " + base);
        }
        int port = base.getPort() < 0 ? 80 : base.getPort();
        long sent = System.nanoTime();
        try (Socket socket = new Socket()) {
            socket.setTcpNoDelay(true);
            socket.connect(new InetSocketAddress(base.getHost(), port), timeoutMillis);
            socket.setSoTimeout(timeoutMillis);
            byte[] json = body.getBytes(StandardCharsets.UTF_8);
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: " + base.getHost() + ":" + port
                    + "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: " + json.length
                    + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(json);
            out.flush();
            InputStream in = new BufferedInputStream(socket.getInputStream(), 1 << 14);
            String status = line(in);
            String[] parts = status.split(" ", 3);
            if (parts.length < 2 || !parts[0].startsWith("HTTP/") || !parts[1].matches("[0-9]{3}")) {
                throw new IOException("not an HTTP status line: " + status);
            }
            int code = Integer.parseInt(parts[1]);
            boolean chunked = false;
            long length = -1;
            for (String h; !(h = line(in)).isEmpty(); ) {
                int colon = h.indexOf(':');
                if (colon < 0) continue;
                String name = h.substring(0, colon).trim().toLowerCase(Locale.ROOT), value = h.substring(colon + 1).trim();
                if (name.equals("transfer-encoding") && value.equalsIgnoreCase("chunked")) chunked = true;
                if (name.equals("content-length")) {
                    try {
                        length = Long.parseLong(value);
                    } catch (NumberFormatException e) {
                        throw new IOException("a Content-Length that is not a number: " + h);
                    }
                }
            }
            InputStream content = chunked ? new Chunked(in) : length >= 0 ? new Sized(in, length) : in;
            if (code == 503) return null;
            if (code != 200) throw new IOException("HTTP " + code + ": " + new String(content.readAllBytes(), StandardCharsets.UTF_8));
            long first = 0, previous = 0, tokens = -1;
            List<Double> gaps = new ArrayList<>();
            BufferedReader events = new BufferedReader(new InputStreamReader(content, StandardCharsets.UTF_8));
            for (String line; (line = events.readLine()) != null; ) {
                if (!line.startsWith("data: ")) continue;
                String data = line.substring(6);
                if (data.equals("[DONE]")) break;
                long now = System.nanoTime();
                JsonObject chunk = JsonParser.parseString(data).getAsJsonObject();
                if (chunk.has("usage") && chunk.get("usage").isJsonObject()) {
                    tokens = chunk.getAsJsonObject("usage").get("completion_tokens").getAsLong();
                }
                var choices = chunk.getAsJsonArray("choices");
                if (choices == null || choices.isEmpty() || choices.get(0).getAsJsonObject().get("text").getAsString().isEmpty()) continue;
                if (first == 0) first = now;
                else gaps.add((now - previous) / 1e6);
                previous = now;
            }
            if (tokens < 0) throw new IOException("the stream ended without its usage chunk");
            return new Sample(tokens, first == 0 ? Double.NaN : (first - sent) / 1e6, gaps.stream().mapToDouble(Double::doubleValue).toArray());
        }
    }

    /** One line of the head (or a chunk size), ASCII, without its CR LF; refuses an end of stream. */
    private static String line(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream(64);
        for (int c; (c = in.read()) != '\n'; ) {
            if (c < 0) throw new EOFException("the connection closed inside a line");
            if (c != '\r') b.write(c);
        }
        return b.toString(StandardCharsets.US_ASCII);
    }

    /** A body's bytes, read through {@code read(byte[], int, int)}, which each kind of body defines. */
    private abstract static class Body extends InputStream {
        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
        }
    }

    /** A chunked body's data: each read returns what the current chunk has (never waits to fill the buffer). */
    private static final class Chunked extends Body {
        private final InputStream in;
        private long left;
        private boolean started, done;

        Chunked(InputStream in) {
            this.in = in;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (done) return -1;
            if (len == 0) return 0;
            if (left == 0) {
                if (started && !line(in).isEmpty()) throw new IOException("a chunk longer than its size");
                started = true;
                String size = line(in);
                int semicolon = size.indexOf(';');
                try {
                    left = Long.parseLong((semicolon < 0 ? size : size.substring(0, semicolon)).trim(), 16);
                } catch (NumberFormatException e) {
                    throw new IOException("a chunk size that is not hexadecimal: \"" + size + "\"");
                }
                if (left < 0) throw new IOException("a negative chunk size: \"" + size + "\"");
                if (left == 0) {
                    done = true;
                    return -1;
                }
            }
            int n = in.read(b, off, (int) Math.min(len, left));
            if (n < 0) throw new EOFException("the connection closed inside a chunk");
            left -= n;
            return n;
        }
    }

    /** A body of a stated length. */
    private static final class Sized extends Body {
        private final InputStream in;
        private long left;

        Sized(InputStream in, long length) {
            this.in = in;
            this.left = length;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (left == 0) return -1;
            if (len == 0) return 0;
            int n = in.read(b, off, (int) Math.min(len, left));
            if (n < 0) throw new EOFException("the connection closed " + left + " bytes before the body's end");
            left -= n;
            return n;
        }
    }
}
