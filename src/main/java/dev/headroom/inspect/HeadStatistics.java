package dev.headroom.inspect;

import java.io.Serial;
import java.io.Serializable;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-head statistics of attention, accumulated by the kernels while they run, over every query
 * row of every call it is passed to, without storing any n × n matrix: memory is
 * O(heads · B · n_k) doubles (the column masses), so it works at 100k tokens. Positions follow the masks' alignment: query i
 * sits at key position p = i + n_k − n_q.
 *
 * <p>For a query row with probabilities p_j over its allowed keys, with scores s_j:
 * <ul>
 *   <li>entropy H = logsumexp(s) − Σ p_j s_j (nats), and H / ln(allowed keys);</li>
 *   <li>mean distance Σ p_j |j − p|;</li>
 *   <li>mass on self (j = p), previous (p − 1), next (p + 1), first (0), given positions
 *       (delimiters, per batch element), a band |j − p| ≤ k, and each offset j − p in [−K, K];</li>
 *   <li>confidence max_j p_j; the argmax offset, whose most frequent value and its share of rows
 *       are reported;</li>
 *   <li>column mass Σ_i p_ij per key (summed over rows), from which the share of the total on the
 *       top few keys ("vertical" heads) is computed;</li>
 *   <li>with token ids: mass on earlier occurrences of the query's token (duplicate-token) and on
 *       the tokens that followed them (induction), over rows that have any (Olsson et al. 2022).</li>
 * </ul>
 * Thread-safe: workers add whole blocks under a per-head lock.
 *
 * <p>Over a corpus split into parts (documents on several machines), each part's statistics
 * become {@link Totals}, which merge by addition in any order and give the same summaries as
 * one object that saw every part, up to the rounding of the sums' order.
 */
public final class HeadStatistics {
    /**
     * @param band        k of the band mass |j − p| ≤ k
     * @param maxOffset   K: offsets −K..K get their own mass in the offset profile
     * @param topColumns  how many keys the column concentration looks at
     * @param delimiters  per batch element, key positions that count as delimiters ([CLS], [SEP],
     *                    punctuation), or null
     * @param tokens      per batch element, the token id of every key position, for the
     *                    duplicate-token and induction scores (self-attention), or null
     * @param queryLengths per batch element, how many leading query rows are real: rows past it
     *                    (padding in a batch) are left out of every statistic; null counts all rows
     */
    public record Options(int band, int maxOffset, int topColumns, int[][] delimiters, int[][] tokens, int[] queryLengths) {
        public Options {
            if (band < 0 || maxOffset < 1 || topColumns < 1) {
                throw new IllegalArgumentException("band >= 0, maxOffset >= 1, topColumns >= 1 required, got " + band + ", "
                        + maxOffset + ", " + topColumns);
            }
        }

        public static Options defaults() {
            return new Options(2, 4, 3, null, null, null);
        }

        public Options withDelimiters(int[][] positions) {
            return new Options(band, maxOffset, topColumns, deepCopy(positions), tokens, queryLengths);
        }

        public Options withTokens(int[][] ids) {
            return new Options(band, maxOffset, topColumns, delimiters, deepCopy(ids), queryLengths);
        }

        private static int[][] deepCopy(int[][] a) {
            return a == null ? null : java.util.Arrays.stream(a).map(int[]::clone).toArray(int[][]::new);
        }

        /** Checks the per-batch arrays against a call's batch, n_q and n_k (at the public boundary). */
        public void check(int batch, int queries, int keys) {
            if (queryLengths != null && queryLengths.length != batch) {
                throw new IllegalArgumentException("statistics' query lengths give " + queryLengths.length
                        + " values for a batch of " + batch);
            }
            if (delimiters != null && delimiters.length != batch) {
                throw new IllegalArgumentException("statistics' delimiters give " + delimiters.length
                        + " lists for a batch of " + batch);
            }
            if (tokens != null) {
                if (tokens.length != batch) {
                    throw new IllegalArgumentException("statistics' token ids give " + tokens.length + " lists for a batch of " + batch);
                }
                for (int b = 0; b < batch; b++) {
                    if (tokens[b].length != keys) {
                        throw new IllegalArgumentException("token ids of batch element " + b + " give " + tokens[b].length
                                + " positions, the keys are " + keys);
                    }
                }
            }
        }

        public Options withBand(int k) {
            return new Options(k, maxOffset, topColumns, delimiters, tokens, queryLengths);
        }

        public Options withQueryLengths(int... lengths) {
            return new Options(band, maxOffset, topColumns, delimiters, tokens, lengths.clone());
        }

        /** Whether query row i of batch element b is a real row (not padding). */
        public boolean counts(int b, int i) {
            return queryLengths == null || i < queryLengths[b];
        }
    }

    private final int heads;
    private final Options options;
    private final Acc[] acc;

    public HeadStatistics(int heads, Options options) {
        if (heads < 1) throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        this.heads = heads;
        this.options = options;
        acc = new Acc[heads];
        for (int h = 0; h < heads; h++) acc[h] = new Acc(options.maxOffset);
    }

    public Options options() {
        return options;
    }

    public int heads() {
        return heads;
    }

    /** The running sums of one head (or of one block before it is added). */
    public static final class Acc implements Serializable {
        @Serial
        private static final long serialVersionUID = 1L;
        public long rows;                 // rows with at least one allowed key
        public long entropyRows;          // rows with more than one allowed key
        public double entropy, normalizedEntropy, distance, self, previous, next, first, delimiter, band, confidence;
        public final double[] offsets;    // mass at offset j − p = t − K for t in [0, 2K]
        public final Map<Integer, Long> argmaxOffsets = new HashMap<>();
        public long duplicateRows, inductionRows;
        public double duplicate, induction;
        /** Column mass per batch element, grown on demand: columns[b][j]. */
        public double[][] columns = new double[0][];

        public Acc(int maxOffset) {
            offsets = new double[2 * maxOffset + 1];
        }

        void add(Acc o) {
            rows += o.rows;
            entropyRows += o.entropyRows;
            entropy += o.entropy;
            normalizedEntropy += o.normalizedEntropy;
            distance += o.distance;
            self += o.self;
            previous += o.previous;
            next += o.next;
            first += o.first;
            delimiter += o.delimiter;
            band += o.band;
            confidence += o.confidence;
            for (int t = 0; t < offsets.length; t++) offsets[t] += o.offsets[t];
            o.argmaxOffsets.forEach((k, v) -> argmaxOffsets.merge(k, v, Long::sum));
            duplicateRows += o.duplicateRows;
            inductionRows += o.inductionRows;
            duplicate += o.duplicate;
            induction += o.induction;
        }

        /** Column mass of batch element b, sized for n_k keys. */
        public double[] columns(int b, int keys) {
            if (columns.length <= b) columns = Arrays.copyOf(columns, b + 1);
            if (columns[b] == null || columns[b].length < keys) {
                columns[b] = columns[b] == null ? new double[keys] : Arrays.copyOf(columns[b], keys);
            }
            return columns[b];
        }
    }

    /** Per batch element: delimiter flags and duplicate/induction targets, computed once and shared by every block. */
    public record Targets(boolean[] delimiter, int[] tokens, boolean[] hasDuplicate, boolean[] hasInduction) {}

    private final java.util.concurrent.ConcurrentHashMap<List<Integer>, Targets> targets = new java.util.concurrent.ConcurrentHashMap<>();

    /** The targets of batch element b for n_k keys, or null when neither delimiters nor tokens were given. */
    public Targets targets(int b, int keys) {
        if (options.delimiters() == null && options.tokens() == null) return null;
        return targets.computeIfAbsent(List.of(b, keys), k -> {
            boolean[] delim = null;
            if (options.delimiters() != null) {
                delim = new boolean[keys];
                for (int p : options.delimiters()[b]) if (p >= 0 && p < keys) delim[p] = true;
            }
            int[] tok = options.tokens() == null ? null : options.tokens()[b];
            boolean[] dup = null, ind = null;
            if (tok != null) {
                dup = new boolean[tok.length];
                ind = new boolean[tok.length];
                Map<Integer, Integer> firstSeen = new HashMap<>();
                for (int p = 0; p < tok.length; p++) {
                    Integer first = firstSeen.get(tok[p]);
                    dup[p] = first != null;              // an earlier occurrence exists
                    ind[p] = first != null && first + 1 < p; // and the token after it comes before p
                    firstSeen.putIfAbsent(tok[p], p);
                }
            }
            return new Targets(delim, tok, dup, ind);
        });
    }

    /** A fresh block accumulator (one worker, one block). */
    public Acc newBlock() {
        return new Acc(options.maxOffset);
    }

    /** Adds a block's sums to head h. */
    public void add(int h, Acc block) {
        Acc a = acc[h];
        synchronized (a) {
            a.add(block);
        }
    }

    /** Adds column masses of keys [k0, k0 + n) of batch element b to head h. */
    public void addColumns(int h, int b, int keys, int k0, double[] mass, int n) {
        Acc a = acc[h];
        synchronized (a) {
            double[] c = a.columns(b, keys);
            for (int t = 0; t < n; t++) c[k0 + t] += mass[t];
        }
    }

    /** The summary of head h over everything accumulated so far. */
    public HeadSummary summary(int h) {
        Acc a = acc[h];
        synchronized (a) {
            double[] columnMass = columnMass(a);
            return summarize(h, a, columnMass[0], columnMass[1], options.band, options.maxOffset, options.topColumns,
                    options.delimiters != null);
        }
    }

    /**
     * {top, total}: over every batch element, the summed mass of its {@code topColumns} heaviest
     * keys and its total column mass (the column concentration is top / total).
     */
    private double[] columnMass(Acc a) {
        double totalMass = 0, topMass = 0;
        for (double[] col : a.columns) {
            if (col == null) continue;
            double[] sorted = col.clone();
            Arrays.sort(sorted);
            for (double v : sorted) totalMass += v;
            for (int t = 0; t < options.topColumns && t < sorted.length; t++) topMass += sorted[sorted.length - 1 - t];
        }
        return new double[]{topMass, totalMass};
    }

    /** The summary of head h from its sums and its column masses (top keys, total). */
    private static HeadSummary summarize(int h, Acc a, double topMass, double totalMass, int band, int maxOffset, int topColumns,
                                         boolean delimiters) {
        double rows = Math.max(1, a.rows);
        double[] offsetProfile = new double[a.offsets.length];
        for (int t = 0; t < offsetProfile.length; t++) offsetProfile[t] = a.offsets[t] / rows;
        int modeOffset = 0;
        long modeCount = 0;
        for (Map.Entry<Integer, Long> e : a.argmaxOffsets.entrySet()) {
            if (e.getValue() > modeCount || (e.getValue() == modeCount && Math.abs(e.getKey()) < Math.abs(modeOffset))
                    || (e.getValue() == modeCount && Math.abs(e.getKey()) == Math.abs(modeOffset) && e.getKey() < modeOffset)) {
                modeOffset = e.getKey();
                modeCount = e.getValue();
            }
        }
        return new HeadSummary(h, a.rows,
                a.entropy / rows, a.entropyRows == 0 ? 0 : a.normalizedEntropy / a.entropyRows,
                a.distance / rows, a.self / rows, a.previous / rows, a.next / rows, a.first / rows,
                delimiters ? a.delimiter / rows : Double.NaN, band, a.band / rows,
                maxOffset, offsetProfile, a.confidence / rows, modeOffset, modeCount / rows,
                topColumns, totalMass == 0 ? 0 : topMass / totalMass,
                a.duplicateRows == 0 ? Double.NaN : a.duplicate / a.duplicateRows,
                a.inductionRows == 0 ? Double.NaN : a.induction / a.inductionRows);
    }

    /**
     * Everything accumulated so far as {@link Totals}: per head the running sums, with each batch
     * element's column masses reduced to its top keys' mass and its total (all a summary needs of
     * them). Take it once the calls are done: a batch element's column masses are complete only
     * then.
     */
    public Totals totals() {
        Acc[] sums = new Acc[heads];
        double[] top = new double[heads], total = new double[heads];
        for (int h = 0; h < heads; h++) {
            Acc a = acc[h];
            synchronized (a) {
                sums[h] = new Acc(options.maxOffset);
                sums[h].add(a);
                double[] columnMass = columnMass(a);
                top[h] = columnMass[0];
                total[h] = columnMass[1];
            }
        }
        return new Totals(options.band, options.maxOffset, options.topColumns, options.delimiters != null, sums, top, total);
    }

    /**
     * Per-head statistics as plain sums, which merge by addition: the statistics of a corpus are
     * the {@link #plus} of its parts' totals, in any order and grouping (associative and
     * commutative up to the rounding of double sums). Immutable; serializable, so that parts
     * computed elsewhere (a cluster's executors) can be sent to where they are merged.
     *
     * @param delimiters whether the parts were given delimiter positions (else the delimiter mass is NaN)
     * @param sums       per head, the running sums; their column masses are not kept
     * @param topColumnMass per head, Σ over batch elements of the mass on its {@code topColumns} heaviest keys
     * @param columnMass per head, Σ over batch elements of all column mass
     */
    public record Totals(int band, int maxOffset, int topColumns, boolean delimiters, Acc[] sums, double[] topColumnMass,
                         double[] columnMass) implements Serializable {
        @Serial
        private static final long serialVersionUID = 1L;

        public Totals {
            if (sums.length != topColumnMass.length || sums.length != columnMass.length) {
                throw new IllegalArgumentException("totals of " + sums.length + " heads with " + topColumnMass.length + " and "
                        + columnMass.length + " column masses");
            }
        }

        /** Totals of nothing yet (the neutral element of {@link #plus}), for statistics made with {@code options}. */
        public static Totals empty(int heads, Options options) {
            return new HeadStatistics(heads, options).totals();
        }

        public int heads() {
            return sums.length;
        }

        /** This part and {@code other} together; both must be statistics of the same kind (heads, band, offsets, top keys). */
        public Totals plus(Totals other) {
            if (other.heads() != heads() || other.band != band || other.maxOffset != maxOffset || other.topColumns != topColumns
                    || other.delimiters != delimiters) {
                throw new IllegalArgumentException("cannot merge statistics of " + describe() + " with " + other.describe());
            }
            Acc[] s = new Acc[heads()];
            double[] top = new double[heads()], total = new double[heads()];
            for (int h = 0; h < heads(); h++) {
                s[h] = new Acc(maxOffset);
                s[h].add(sums[h]);
                s[h].add(other.sums[h]);
                top[h] = topColumnMass[h] + other.topColumnMass[h];
                total[h] = columnMass[h] + other.columnMass[h];
            }
            return new Totals(band, maxOffset, topColumns, delimiters, s, top, total);
        }

        /** The summary of head h over every part merged in. */
        public HeadSummary summary(int h) {
            return summarize(h, sums[h], topColumnMass[h], columnMass[h], band, maxOffset, topColumns, delimiters);
        }

        public HeadSummary[] summaries() {
            HeadSummary[] s = new HeadSummary[heads()];
            for (int h = 0; h < heads(); h++) s[h] = summary(h);
            return s;
        }

        private String describe() {
            return heads() + " heads (band " + band + ", offsets ±" + maxOffset + ", top " + topColumns + " keys"
                    + (delimiters ? ", delimiters" : "") + ")";
        }
    }

    /** Summaries of all heads. */
    public HeadSummary[] summaries() {
        HeadSummary[] s = new HeadSummary[heads];
        for (int h = 0; h < heads; h++) s[h] = summary(h);
        return s;
    }
}
