package dev.headroom.probe;

import dev.headroom.corpus.BrownCorpus;
import dev.headroom.corpus.BrownCorpus.Part;
import dev.headroom.corpus.UniversalTags;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Per-word labels to probe for, over sentences split into train, dev and test: the input of a
 * probing study. Build one from any labels ({@link #of}) to probe a property of your own, or take
 * part of speech on the Brown corpus ({@link #pos}).
 *
 * @param name    the task's name in reports
 * @param classes the label names; a label is an index into this list, or -1 for a word that is not
 *                scored (neither trained on nor counted)
 * @param parts   the sentences of each part
 */
public record ProbeTask(String name, List<String> classes, Map<Part, List<Sentence>> parts) {
    /** One sentence: its words and each word's label. */
    public record Sentence(List<String> words, int[] labels) {
        public Sentence {
            if (words.size() != labels.length) {
                throw new IllegalArgumentException(words.size() + " words but " + labels.length + " labels");
            }
            words = List.copyOf(words);
        }
    }

    public ProbeTask {
        classes = List.copyOf(classes);
        if (classes.size() < 2) throw new IllegalArgumentException("a task needs at least 2 classes, got " + classes);
        Map<Part, List<Sentence>> copy = new EnumMap<>(Part.class);
        for (Part p : Part.values()) {
            List<Sentence> s = parts.get(p);
            if (s == null || s.isEmpty()) throw new IllegalArgumentException("task " + name + " has no " + p.label() + " sentences");
            for (Sentence sentence : s) {
                for (int label : sentence.labels) {
                    if (label < -1 || label >= classes.size()) {
                        throw new IllegalArgumentException("label " + label + " outside [-1, " + classes.size() + ") in task " + name);
                    }
                }
            }
            copy.put(p, List.copyOf(s));
        }
        parts = Collections.unmodifiableMap(copy);
    }

    /** A task from your own labels. */
    public static ProbeTask of(String name, List<String> classes, List<Sentence> train, List<Sentence> dev, List<Sentence> test) {
        return new ProbeTask(name, classes, Map.of(Part.TRAIN, train, Part.DEV, dev, Part.TEST, test));
    }

    /** Seed of the sentence sample of {@link #pos} when {@code maxSentences} is set; fixed, so every probe seed sees the same data. */
    public static final long SAMPLE_SEED = 1961;

    /**
     * Part of speech: each word of the Brown corpus labelled with its universal tag
     * ({@link UniversalTags}), on the committed document split. {@code maxSentences} &gt; 0 keeps that
     * many sentences in all, 80 / 10 / 10 % from train / dev / test, drawn at random (seed
     * {@link #SAMPLE_SEED}) from each part so that a sample covers every genre; 0 keeps everything.
     *
     * @throws IllegalStateException listing the Brown tags the table does not map (there are none)
     */
    public static ProbeTask pos(BrownCorpus corpus, int maxSentences) throws IOException {
        UniversalTags tags = UniversalTags.brown();
        Map<Part, List<BrownCorpus.Sentence>> all = corpus.sentencesByPart();
        Map<Part, List<Sentence>> parts = new EnumMap<>(Part.class);
        Map<String, Integer> unmapped = new HashMap<>();
        for (Part p : Part.values()) {
            List<BrownCorpus.Sentence> sentences = sample(all.get(p), p, maxSentences);
            List<Sentence> labelled = new ArrayList<>(sentences.size());
            for (BrownCorpus.Sentence s : sentences) {
                int[] labels = new int[s.size()];
                for (int i = 0; i < labels.length; i++) {
                    labels[i] = tags.classOf(s.tags().get(i));
                    if (labels[i] < 0) unmapped.merge(s.tags().get(i), 1, Integer::sum);
                }
                labelled.add(new Sentence(s.words(), labels));
            }
            parts.put(p, labelled);
        }
        if (!unmapped.isEmpty()) throw new IllegalStateException("Brown tags without a universal tag (tag → tokens): " + unmapped);
        return new ProbeTask("pos", UniversalTags.TAGS, parts);
    }

    /** The share of {@code maxSentences} a part gets: 80 / 10 / 10 %, at least 1. */
    static int share(Part p, int maxSentences) {
        int dev = Math.max(1, Math.round(maxSentences * 0.1f)), test = dev;
        return switch (p) {
            case TRAIN -> Math.max(1, maxSentences - dev - test);
            case DEV -> dev;
            case TEST -> test;
        };
    }

    private static <T> List<T> sample(List<T> sentences, Part p, int maxSentences) {
        if (maxSentences <= 0) return sentences;
        int keep = Math.min(sentences.size(), share(p, maxSentences));
        List<T> shuffled = new ArrayList<>(sentences);
        Collections.shuffle(shuffled, new java.util.Random(SAMPLE_SEED + p.ordinal()));
        return shuffled.subList(0, keep);
    }

    /** Labelled words of a part (labels ≥ 0). */
    public long words(Part p) {
        long n = 0;
        for (Sentence s : parts.get(p)) for (int l : s.labels) if (l >= 0) n++;
        return n;
    }

    /**
     * The word type of a word, as the controls group words: lowercased, because the model is
     * uncased and sees "The" and "the" as one input.
     */
    public static String type(String word) {
        return word.toLowerCase(Locale.ROOT);
    }

    /**
     * Hewitt and Liang's (2019) control task: the same sentences, each word type given one fixed
     * label drawn at random from this task's label distribution on train. A probe that does well on
     * it does so by memorising word identity, which is what selectivity (accuracy minus control
     * accuracy) subtracts. The draw for a type depends only on {@code seed} and the type, so types
     * seen only in dev or test get labels too, and the same seed gives the same task.
     */
    public ProbeTask control(long seed) {
        long[] counts = new long[classes.size()];
        for (Sentence s : parts.get(Part.TRAIN)) for (int l : s.labels) if (l >= 0) counts[l]++;
        long total = 0;
        for (long c : counts) total += c;
        double[] cumulative = new double[counts.length];
        double running = 0;
        for (int c = 0; c < counts.length; c++) {
            running += counts[c] / (double) total;
            cumulative[c] = running;
        }
        Map<Part, List<Sentence>> out = new EnumMap<>(Part.class);
        for (Part p : Part.values()) {
            List<Sentence> labelled = new ArrayList<>();
            for (Sentence s : parts.get(p)) {
                int[] labels = new int[s.labels.length];
                for (int i = 0; i < labels.length; i++) {
                    labels[i] = s.labels[i] < 0 ? -1 : draw(cumulative, seed, type(s.words.get(i)));
                }
                labelled.add(new Sentence(s.words, labels));
            }
            out.put(p, labelled);
        }
        return new ProbeTask(name + "-control", classes, out);
    }

    private static int draw(double[] cumulative, long seed, String type) {
        long h = 0xcbf29ce484222325L; // FNV-1a over the type's characters, mixed with the seed
        for (int i = 0; i < type.length(); i++) h = (h ^ type.charAt(i)) * 0x100000001b3L;
        double u = new SplittableRandom(h ^ (seed * 0x9E3779B97F4A7C15L)).nextDouble();
        for (int c = 0; c < cumulative.length; c++) if (u < cumulative[c]) return c;
        return cumulative.length - 1;
    }

    /**
     * The majority-tag-per-word baseline: every word of {@code part} gets its type's most frequent
     * training label (ties: the lower class index); types never seen in train get the most frequent
     * training label overall.
     */
    public Baseline majorityBaseline(Part part) {
        Map<String, long[]> byType = new HashMap<>();
        long[] overall = new long[classes.size()];
        for (Sentence s : parts.get(Part.TRAIN)) {
            for (int i = 0; i < s.labels.length; i++) {
                if (s.labels[i] < 0) continue;
                byType.computeIfAbsent(type(s.words.get(i)), t -> new long[classes.size()])[s.labels[i]]++;
                overall[s.labels[i]]++;
            }
        }
        int fallback = argmax(overall);
        long[][] confusion = new long[classes.size()][classes.size()];
        long unseen = 0, unseenCorrect = 0;
        for (Sentence s : parts.get(part)) {
            for (int i = 0; i < s.labels.length; i++) {
                if (s.labels[i] < 0) continue;
                long[] c = byType.get(type(s.words.get(i)));
                int predicted = c == null ? fallback : argmax(c);
                confusion[s.labels[i]][predicted]++;
                if (c == null) {
                    unseen++;
                    if (predicted == s.labels[i]) unseenCorrect++;
                }
            }
        }
        return new Baseline(new Confusion(confusion), unseen, unseenCorrect);
    }

    /** The baseline's confusion on a part, and how many of its words were never seen in train (and how many of those it got right). */
    public record Baseline(Confusion confusion, long unseenWords, long unseenCorrect) {}

    private static int argmax(long[] c) {
        int best = 0;
        for (int i = 1; i < c.length; i++) if (c[i] > c[best]) best = i;
        return best;
    }
}
