package dev.headroom.generate;

import java.util.List;

/**
 * The text of one generated sequence as it streams, with stop strings: text is released only
 * once it cannot be the beginning of a stop string, so a stop string never appears in the
 * released text, even partly, whatever tokens it is split across. At a stop string the text
 * before it is released and the rest is dropped (the stop string is not part of the output, as
 * OpenAI's and vLLM's {@code stop}).
 */
final class StopText {
    private final List<String> stops;
    private final StringBuilder released = new StringBuilder();
    /** Text held back: the longest tail that is a proper prefix of some stop string. */
    private String held = "";
    private boolean stopped;

    StopText(List<String> stops) {
        for (String s : stops) {
            if (s == null || s.isEmpty()) throw new IllegalArgumentException("stop strings must not be empty");
        }
        this.stops = List.copyOf(stops);
    }

    /** Adds {@code text}; returns what can be released now ("" when held back or stopped). */
    String add(String text) {
        if (stopped || text.isEmpty()) return "";
        String buffer = held + text;
        int at = -1;
        for (String s : stops) {
            int i = buffer.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        if (at >= 0) {
            stopped = true;
            held = "";
            return release(buffer.substring(0, at));
        }
        int hold = 0;
        for (String s : stops) {
            for (int len = Math.min(s.length() - 1, buffer.length()); len > hold; len--) {
                if (buffer.regionMatches(buffer.length() - len, s, 0, len)) {
                    hold = len;
                    break;
                }
            }
        }
        held = buffer.substring(buffer.length() - hold);
        return release(buffer.substring(0, buffer.length() - hold));
    }

    /** The end of the sequence: held text that did not become a stop string is released. */
    String finish() {
        String rest = stopped ? "" : held;
        held = "";
        return release(rest);
    }

    boolean stopped() {
        return stopped;
    }

    String text() {
        return released.toString();
    }

    private String release(String s) {
        released.append(s);
        return s;
    }
}
