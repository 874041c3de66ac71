package dev.headroom.corpus;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Brown tags → the 12 universal part-of-speech tags of Petrov, Das and McDonald (2012), by their
 * published table {@code en-brown.map} (a committed resource, CC BY-SA 4.0, see its NOTICE).
 *
 * <p><b>The rule is the table, and nothing is guessed.</b> The table lists 472 Brown tags, and the
 * corpus uses exactly those 472 (tested: every tag of every document maps, 0 unmapped). A tag is
 * looked up case-insensitively (the corpus writes {@code nn-tl}, the table {@code NN-TL}); a tag that
 * is not in the table maps to null, and callers count it as unmapped rather than sending it to
 * {@code X}, as NLTK's default does. What the table does with Brown's compound tags, as read from it
 * (tested on the table):
 * <ul>
 *   <li>suffixes {@code -hl} (headline), {@code -tl} (title), {@code -nc} (cited word), alone or
 *       stacked ({@code nns$-tl-hl}): the tag of the base, without exception;</li>
 *   <li>{@code *} (negation, {@code vbz*} "doesn't"…): the base's tag, VERB for every such tag;
 *       {@code *} alone ("not", "n't") is ADV;</li>
 *   <li>{@code $} (possessive): mostly the base's tag ({@code np$} NOUN); the exceptions are
 *       {@code pp$} DET, {@code pp$$} PRON, {@code wp$} DET, {@code cd$} NOUN, and {@code ap$},
 *       {@code jj$-tl}, {@code rb$} PRT;</li>
 *   <li>{@code +} (contractions, {@code ppss+bem} "I'm", {@code nn+bez}, {@code md+hv}): PRT when a
 *       pronoun, noun, determiner, {@code ex}, {@code to} or wh-word is followed by a verb; VERB
 *       when the first part is a verb or modal ({@code md+hv}, {@code vb+ppo}); the first part's tag
 *       for the rest ({@code in+in} ADP, {@code rb+cs} ADV); X for {@code do+ppss},
 *       {@code wdt+ber+pp}, {@code wdt+do+pps};</li>
 *   <li>{@code fw-…} (foreign words, whatever follows): X.</li>
 * </ul>
 */
public final class UniversalTags {
    /** The 12 universal tags, in the order of Petrov et al.'s paper; a tag's index here is its class id. */
    public static final List<String> TAGS = List.of("VERB", "NOUN", "PRON", "ADJ", "ADV", "ADP", "CONJ", "DET", "NUM", "PRT", "X", ".");
    public static final String RESOURCE = "/dev/headroom/corpus/en-brown.map";

    /** Upper-case Brown tag → universal tag, in the table's order. */
    private final Map<String, String> table;

    private UniversalTags(Map<String, String> table) {
        this.table = Collections.unmodifiableMap(table);
    }

    /** Petrov et al.'s Brown table, read from the class path. */
    public static UniversalTags brown() throws IOException {
        Map<String, String> table = new LinkedHashMap<>();
        try (InputStream in = UniversalTags.class.getResourceAsStream(RESOURCE)) {
            if (in == null) throw new IOException("classpath resource " + RESOURCE + " is missing");
            String[] lines = new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n");
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].isEmpty()) continue;
                String[] f = lines[i].split("\t");
                if (f.length != 2 || !TAGS.contains(f[1])) {
                    throw new IOException(RESOURCE + " line " + (i + 1) + ": expected 'BROWN<TAB>universal tag', got '" + lines[i] + "'");
                }
                if (table.put(f[0], f[1]) != null) throw new IOException(RESOURCE + " line " + (i + 1) + ": " + f[0] + " listed twice");
            }
        }
        return new UniversalTags(table);
    }

    /** The universal tag of Brown tag {@code brownTag}, or null when the table does not list it. */
    public String map(String brownTag) {
        return table.get(brownTag.toUpperCase(Locale.ROOT));
    }

    /** The class id (index in {@link #TAGS}) of {@code brownTag}'s universal tag, or -1 when unmapped. */
    public int classOf(String brownTag) {
        String u = map(brownTag);
        return u == null ? -1 : TAGS.indexOf(u);
    }

    /** The table: upper-case Brown tag → universal tag. */
    public Map<String, String> table() {
        return table;
    }
}
