package dev.headroom.model.tokenizer;

import java.util.Arrays;

/**
 * Token ids of a batch of sequences, right-padded to a common length.
 *
 * @param ids     (batch, length), row-major: sequence b's tokens at [b·length, b·length + lengths[b]),
 *                then {@code padId}
 * @param batch   number of sequences B
 * @param length  padded length n: the longest sequence
 * @param lengths real tokens per sequence (the attention lengths), each in [1, n] for real text
 *                ([CLS] and [SEP] are always there)
 */
public record TokenBatch(int[] ids, int batch, int length, int[] lengths) {
    public TokenBatch {
        if (batch < 0 || length < 0) throw new IllegalArgumentException("batch and length must be >= 0, got " + batch + ", " + length);
        if (ids.length != (long) batch * length) {
            throw new IllegalArgumentException("ids hold " + ids.length + " tokens, a (" + batch + ", " + length + ") batch needs "
                    + (long) batch * length);
        }
        if (lengths.length != batch) {
            throw new IllegalArgumentException(lengths.length + " lengths given for a batch of " + batch);
        }
        for (int len : lengths) {
            if (len < 0 || len > length) {
                throw new IllegalArgumentException("sequence length " + len + " outside [0, " + length + "] in " + Arrays.toString(lengths));
            }
        }
    }

    /** One unpadded sequence. */
    public static TokenBatch of(int... ids) {
        return new TokenBatch(ids.clone(), 1, ids.length, new int[]{ids.length});
    }

    /** Sequences of any lengths, right-padded with {@code padId} to the longest. */
    public static TokenBatch padded(int padId, int[]... sequences) {
        int n = 0;
        for (int[] s : sequences) n = Math.max(n, s.length);
        int[] ids = new int[sequences.length * n];
        int[] lengths = new int[sequences.length];
        Arrays.fill(ids, padId);
        for (int b = 0; b < sequences.length; b++) {
            System.arraycopy(sequences[b], 0, ids, b * n, sequences[b].length);
            lengths[b] = sequences[b].length;
        }
        return new TokenBatch(ids, sequences.length, n, lengths);
    }

    /** The token ids of sequence b without padding. */
    public int[] sequence(int b) {
        return Arrays.copyOfRange(ids, b * length, b * length + lengths[b]);
    }

    /** The attention mask, (batch, length): 1 for real tokens, 0 for padding. */
    public long[] attentionMask() {
        long[] mask = new long[ids.length];
        for (int b = 0; b < batch; b++) Arrays.fill(mask, b * length, b * length + lengths[b], 1L);
        return mask;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TokenBatch t && batch == t.batch && length == t.length && Arrays.equals(ids, t.ids)
                && Arrays.equals(lengths, t.lengths);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(ids) + Arrays.hashCode(lengths);
    }

    @Override
    public String toString() {
        return "TokenBatch(" + batch + " × " + length + ", lengths " + Arrays.toString(lengths) + ")";
    }
}
