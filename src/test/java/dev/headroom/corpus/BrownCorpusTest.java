package dev.headroom.corpus;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Java parser against tools/tiny/brown.py, the committed split, and the universal tag table
 * against every tag of the corpus. Needs the corpus (bin/test fetches it; see BrownCorpus.directory()).
 */
class BrownCorpusTest {
    private static BrownCorpus corpus;

    @BeforeAll
    static void open() throws IOException {
        corpus = BrownCorpus.open();
    }

    /** Every document parses to what brown.py parses (brown.py --fingerprints wrote the fixture). */
    @Test
    void parsesEveryDocumentAsBrownPyDoes() throws Exception {
        List<String> fixture;
        try (InputStream in = getClass().getResourceAsStream("/dev/headroom/corpus/brown-fingerprints.tsv")) {
            fixture = new String(in.readAllBytes(), StandardCharsets.US_ASCII).lines().toList();
        }
        assertEquals(500, fixture.size());
        assertEquals(corpus.documents(), fixture.stream().map(l -> l.split("\t")[0]).toList());
        for (String line : fixture) {
            String[] f = line.split("\t");
            List<List<BrownCorpus.Sentence>> paragraphs = corpus.paragraphs(f[0]);
            StringBuilder text = new StringBuilder();
            int sentences = 0, tokens = 0;
            for (List<BrownCorpus.Sentence> p : paragraphs) {
                for (BrownCorpus.Sentence s : p) {
                    for (int i = 0; i < s.size(); i++) text.append(i == 0 ? "" : "\t").append(s.words().get(i)).append(' ').append(s.tags().get(i));
                    text.append('\n');
                    sentences++;
                    tokens += s.size();
                }
                text.append('\n');
            }
            String digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(text.toString().getBytes(StandardCharsets.UTF_8)));
            assertEquals(f[1] + " " + f[2] + " " + f[3], sentences + " " + tokens + " " + digest, f[0]);
        }
    }

    @Test
    void collapsesDoubledPunctuationAndSplitsAtTheLastSlash() {
        List<List<BrownCorpus.Sentence>> p = BrownCorpus.parse("cx01",
                "\tSo/ql relations/nns ;/. ;/. 1/2/cd ,/, ,/, and/cc ./. ./.\n\n  \n\tA/at b/nn\nC/nn\n");
        assertEquals(2, p.size());
        BrownCorpus.Sentence s = p.getFirst().getFirst();
        // ';' and ',' lose their repetition; '.' is not one of the doubled marks and stays twice
        assertEquals(List.of("So", "relations", ";", "1/2", ",", "and", ".", "."), s.words());
        assertEquals(List.of("ql", "nns", ".", "cd", ",", "cc", ".", "."), s.tags());
        assertEquals(2, p.get(1).size());
    }

    /** The committed split: the file brown.py --check-split verifies (same bytes), its sizes, every category in every part. */
    @Test
    void theSplitIsTheCommittedDeterministicOne() throws Exception {
        byte[] bytes;
        try (InputStream in = getClass().getResourceAsStream(BrownCorpus.SPLIT_RESOURCE)) {
            bytes = in.readAllBytes();
        }
        assertEquals("ec4bf0bae1a43bffe00697a794ed59fbcf60f09170109d27824c302cdf48d14e",
                HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)));
        Map<String, BrownCorpus.Part> split = BrownCorpus.split();
        assertEquals(split, BrownCorpus.split());
        Map<BrownCorpus.Part, Integer> counts = new TreeMap<>();
        Map<Character, Map<BrownCorpus.Part, Integer>> byCategory = new TreeMap<>();
        split.forEach((doc, part) -> {
            counts.merge(part, 1, Integer::sum);
            byCategory.computeIfAbsent(doc.charAt(1), c -> new TreeMap<>()).merge(part, 1, Integer::sum);
        });
        assertEquals(Map.of(BrownCorpus.Part.TRAIN, 396, BrownCorpus.Part.DEV, 52, BrownCorpus.Part.TEST, 52), counts);
        assertEquals(15, byCategory.size());
        byCategory.forEach((c, parts) -> assertEquals(3, parts.size(), "category " + c + ": " + parts));
        Map<BrownCorpus.Part, List<BrownCorpus.Sentence>> sentences = corpus.sentencesByPart();
        assertEquals(45409, sentences.get(BrownCorpus.Part.TRAIN).size());
        assertEquals(5976, sentences.get(BrownCorpus.Part.DEV).size());
        assertEquals(5955, sentences.get(BrownCorpus.Part.TEST).size());
        assertEquals(913619, sentences.get(BrownCorpus.Part.TRAIN).stream().mapToInt(BrownCorpus.Sentence::size).sum());
    }

    /** Every tag of the corpus is in Petrov et al.'s table: 0 unmapped tokens, 0 unmapped tags. */
    @Test
    void everyCorpusTagMapsToAUniversalTag() throws IOException {
        UniversalTags tags = UniversalTags.brown();
        Map<String, Integer> unmapped = new TreeMap<>();
        Map<String, Integer> universal = new HashMap<>();
        Map<String, Integer> brownTags = new HashMap<>();
        for (String doc : corpus.documents()) {
            for (BrownCorpus.Sentence s : corpus.sentences(doc)) {
                for (String t : s.tags()) {
                    brownTags.merge(t, 1, Integer::sum);
                    String u = tags.map(t);
                    if (u == null) unmapped.merge(t, 1, Integer::sum);
                    else universal.merge(u, 1, Integer::sum);
                }
            }
        }
        assertEquals(Map.of(), unmapped, "unmapped Brown tags (tag → tokens)");
        assertEquals(472, brownTags.size());
        assertEquals(472, tags.table().size());
        assertEquals(275558, universal.get("NOUN"));
        assertEquals(182750, universal.get("VERB"));
        assertEquals(141516, universal.get("."));
        assertEquals(1386, universal.get("X"));
        assertEquals(1155143, universal.values().stream().mapToInt(Integer::intValue).sum());
        assertEquals("PRT", tags.map("ppss+bem"));
        assertEquals("NOUN", tags.map("nn-tl"));
        assertEquals("VERB", tags.map("vbz*".replace("vbz", "bez")));
        assertEquals("NOUN", tags.map("np$"));
        assertNull(tags.map("no-such-tag"));
        assertEquals(-1, tags.classOf("no-such-tag"));
    }

    /** What the class comment says the table does with compound tags, checked on the table itself. */
    @Test
    void theTableTreatsSuffixesAsTheirBase() throws IOException {
        Map<String, String> table = UniversalTags.brown().table();
        int suffixed = 0;
        for (Map.Entry<String, String> e : table.entrySet()) {
            String base = e.getKey();
            while (base.matches(".*-(HL|TL|NC)$")) base = base.substring(0, base.length() - 3);
            if (!base.equals(e.getKey()) && table.containsKey(base)) {
                suffixed++;
                assertEquals(table.get(base), e.getValue(), e.getKey() + " against " + base);
            }
            if (e.getKey().startsWith("FW-")) assertEquals("X", e.getValue(), e.getKey());
        }
        assertTrue(suffixed > 150, suffixed + " suffixed tags");
        for (String negated : List.of("BEZ*", "DOD*", "HVZ*", "MD*", "BER*-NC")) assertEquals("VERB", table.get(negated));
        assertEquals("ADV", table.get("*"));
        assertEquals("DET", table.get("PP$"));
        assertEquals("PRON", table.get("PP$$"));
        assertEquals("VERB", table.get("MD+HV"));
        assertEquals("X", table.get("DO+PPSS"));
    }

    @Test
    void aMissingCorpusSaysHowToFetchIt(@org.junit.jupiter.api.io.TempDir java.nio.file.Path empty) {
        IOException e = assertThrows(IOException.class, () -> BrownCorpus.open(empty));
        assertTrue(e.getMessage().contains("bin/fetch-brown") && e.getMessage().contains(BrownCorpus.ENVIRONMENT), e.getMessage());
    }
}
