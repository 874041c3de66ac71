package dev.headroom.probe;

import dev.headroom.blas.Blas;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import org.tribuo.math.LinearParameters;
import org.tribuo.math.la.DenseMatrix;
import org.tribuo.math.la.Tensor;
import org.tribuo.math.optimisers.AdaGrad;
import org.tribuo.math.StochasticGradientOptimiser;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

/**
 * A linear probe: multinomial logistic regression with an L2 penalty, trained by minibatch
 * gradient steps streamed from {@link Features}, never holding more than one block of them.
 * <pre>
 *   x̂ = (x − μ) / σ                         μ, σ per feature, over the training rows
 *   p = softmax(W x̂ + b)                     W (C, d), b (C)
 *   minimise  mean over rows of −log p[y]  +  (λ/2)·‖W‖²      (b is not penalised)
 * </pre>
 * The optimiser is Tribuo's {@link AdaGrad} over its {@link LinearParameters} (Tribuo's default for
 * its logistic regression: learning rate 1, ε 0.1); this class computes each minibatch's gradient
 * with two sgemm calls and hands it to Tribuo. Why not Tribuo's trainer: it first copies every
 * example into an {@code SGDVector[]} on the heap (AbstractSGDTrainer.train), and its one L2 option
 * for linear models, AdaGradRDA, does not regularise a matrix in 4.3.2 (its matrix never advances the
 * iteration count the penalty is multiplied by). README, "Probing", has the details.
 *
 * <p><b>Order.</b> Each epoch visits the rows in blocks of {@link Options#blockRows} in an order
 * shuffled by the seed, and shuffles the rows within each block; minibatches are cut from that
 * stream. Same features, labels, options and seed: the same probe, bit for bit (one thread, and
 * OpenBLAS runs each product on one thread).
 */
public final class LinearProbe {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /**
     * @param batch        rows per gradient step
     * @param epochs       passes over the training rows
     * @param minSteps     at least this many steps, however few the rows (small samples take more passes)
     * @param learningRate AdaGrad's initial learning rate
     * @param blockRows    rows read at a time; also the span rows are shuffled within
     */
    public record Options(int batch, int epochs, int minSteps, double learningRate, int blockRows) {
        public Options {
            if (batch < 1 || epochs < 1 || minSteps < 0 || !(learningRate > 0) || blockRows < batch) {
                throw new IllegalArgumentException("probe options need batch >= 1, epochs >= 1, minSteps >= 0, learning rate > 0 and "
                        + "blockRows >= batch; got " + this);
            }
        }

        public static Options defaults() {
            return new Options(256, 3, 2000, 1.0, 8192);
        }

        public Options withEpochs(int e) {
            return new Options(batch, e, minSteps, learningRate, blockRows);
        }

        public Options withMinSteps(int s) {
            return new Options(batch, epochs, s, learningRate, blockRows);
        }
    }

    /**
     * A trained probe: class c's score of features x is Σ_j weights[c·dim + j]·(x_j − mean_j)·scale_j + bias[c].
     *
     * @param weights (classes, dim), row-major
     * @param l2      the λ it was trained with
     * @param steps   the gradient steps taken
     */
    public record Model(int classes, int dim, float[] weights, float[] bias, float[] mean, float[] scale, double l2, long steps) {}

    private LinearProbe() {}

    /**
     * Trains a probe on {@code features} with {@code labels[row]} in [0, classes) (rows labelled -1
     * are skipped), penalty λ = {@code l2}.
     */
    public static Model train(Features features, int[] labels, int classes, double l2, Options options, long seed) {
        int d = features.dim(), C = classes, rows = features.rows(), m = options.batch();
        if (labels.length != rows) throw new IllegalArgumentException(labels.length + " labels for " + rows + " rows");
        if (l2 < 0) throw new IllegalArgumentException("λ must be >= 0, got " + l2);
        long usable = 0;
        for (int l : labels) {
            if (l >= C) throw new IllegalArgumentException("label " + l + " outside [0, " + C + ")");
            if (l >= 0) usable++;
        }
        if (usable == 0) throw new IllegalArgumentException("no labelled rows to train on");
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            int blockRows = Math.min(options.blockRows(), Math.max(m, rows));
            /* block: (blockRows, d) float32, the rows being visited. */
            MemorySegment block = arena.allocate((long) blockRows * d * Float.BYTES, TrackedArena.ALIGNMENT);
            float[][] standard = standardisation(features, labels, block, blockRows);
            float[] mean = standard[0], scale = standard[1];
            /* x: (m, d), the minibatch standardised; z: (m, C) scores then p − y; w: (C, d) weights; g: (C, d) gradient. */
            Matrix x = Matrix.of(arena.allocate((long) m * d * Float.BYTES, TrackedArena.ALIGNMENT), 0, m, d);
            Matrix z = Matrix.of(arena.allocate((long) m * C * Float.BYTES, TrackedArena.ALIGNMENT), 0, m, C);
            Matrix w = Matrix.of(arena.allocate((long) C * d * Float.BYTES, TrackedArena.ALIGNMENT), 0, C, d);
            Matrix g = Matrix.of(arena.allocate((long) C * d * Float.BYTES, TrackedArena.ALIGNMENT), 0, C, d);
            float[] bias = new float[C];
            int[] y = new int[m];

            // Tribuo's parameters: (C, d + 1), the last column the bias (as Tribuo lays out its linear models).
            LinearParameters parameters = new LinearParameters(d + 1, C);
            StochasticGradientOptimiser optimiser = new AdaGrad(options.learningRate(), 0.1);
            optimiser.initialise(parameters);

            SplittableRandom random = new SplittableRandom(seed);
            int blocks = (rows + blockRows - 1) / blockRows;
            long stepsPerEpoch = Math.max(1, (usable + m - 1) / m);
            long target = Math.max((long) options.epochs() * stepsPerEpoch, options.minSteps()), steps = 0;
            int filled = 0;
            while (steps < target) {
                int[] blockOrder = permutation(blocks, random);
                for (int bi = 0; bi < blocks && steps < target; bi++) {
                    int first = blockOrder[bi] * blockRows, count = Math.min(blockRows, rows - first);
                    features.read(first, count, block);
                    int[] rowOrder = permutation(count, random);
                    for (int k = 0; k < count && steps < target; k++) {
                        int row = rowOrder[k];
                        int label = labels[first + row];
                        if (label < 0) continue;
                        standardiseInto(block, (long) row * d, x, filled, mean, scale);
                        y[filled++] = label;
                        if (filled == m) {
                            step(x, z, w, g, bias, y, m, l2, parameters, optimiser);
                            steps++;
                            filled = 0;
                        }
                    }
                }
            }
            optimiser.finalise();
            DenseMatrix W = parameters.getWeightMatrix();
            float[] weights = new float[C * d];
            for (int c = 0; c < C; c++) {
                for (int j = 0; j < d; j++) weights[c * d + j] = (float) W.get(c, j);
                bias[c] = (float) W.get(c, d);
            }
            return new Model(C, d, weights, bias, mean, scale, l2, steps);
        }
    }

    /**
     * One step on a full minibatch: z = x Wᵀ + b, p = softmax(z), G = (p − onehot(y)) / m,
     * ∇W = Gᵀ x + λW, ∇b = Σ rows of G; Tribuo's AdaGrad turns −∇ into the update, and the new
     * weights are copied back for the next product.
     */
    private static void step(Matrix x, Matrix z, Matrix w, Matrix g, float[] bias, int[] y, int m, double l2,
                             LinearParameters parameters, StochasticGradientOptimiser optimiser) {
        int C = z.cols(), d = x.cols();
        Blas.sgemm(1f, x, false, w, true, 0f, z);
        double[] biasGradient = new double[C];
        double[] p = new double[C];
        for (int i = 0; i < m; i++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < C; c++) {
                p[c] = z.get(i, c) + bias[c];
                max = Math.max(max, p[c]);
            }
            double sum = 0;
            for (int c = 0; c < C; c++) sum += p[c] = Math.exp(p[c] - max);
            for (int c = 0; c < C; c++) {
                double gic = (p[c] / sum - (c == y[i] ? 1 : 0)) / m;
                z.set(i, c, (float) gic);
                biasGradient[c] += gic;
            }
        }
        Blas.sgemm(1f, z, true, x, false, 0f, g);
        DenseMatrix update = new DenseMatrix(C, d + 1);
        for (int c = 0; c < C; c++) {
            for (int j = 0; j < d; j++) update.set(c, j, -(g.get(c, j) + l2 * w.get(c, j)));
            update.set(c, d, -biasGradient[c]);
        }
        Tensor[] updates = optimiser.step(new Tensor[]{update}, 1.0);
        parameters.update(updates);
        DenseMatrix W = parameters.getWeightMatrix();
        for (int c = 0; c < C; c++) {
            for (int j = 0; j < d; j++) w.set(c, j, (float) W.get(c, j));
            bias[c] = (float) W.get(c, d);
        }
    }

    /** Per-feature mean and 1/σ over the labelled rows (σ floored at 1e-6), in double, one pass. */
    private static float[][] standardisation(Features features, int[] labels, MemorySegment block, int blockRows) {
        int d = features.dim(), rows = features.rows();
        double[] sum = new double[d], sumSq = new double[d];
        long n = 0;
        for (int first = 0; first < rows; first += blockRows) {
            int count = Math.min(blockRows, rows - first);
            features.read(first, count, block);
            for (int r = 0; r < count; r++) {
                if (labels[first + r] < 0) continue;
                n++;
                for (int j = 0; j < d; j++) {
                    double v = block.getAtIndex(F, (long) r * d + j);
                    sum[j] += v;
                    sumSq[j] += v * v;
                }
            }
        }
        float[] mean = new float[d], scale = new float[d];
        for (int j = 0; j < d; j++) {
            double mu = sum[j] / n, var = Math.max(0, sumSq[j] / n - mu * mu);
            mean[j] = (float) mu;
            scale[j] = (float) (1 / Math.max(Math.sqrt(var), 1e-6));
        }
        return new float[][]{mean, scale};
    }

    private static void standardiseInto(MemorySegment block, long offset, Matrix x, int row, float[] mean, float[] scale) {
        for (int j = 0; j < mean.length; j++) x.set(row, j, (block.getAtIndex(F, offset + j) - mean[j]) * scale[j]);
    }

    private static int[] permutation(int n, SplittableRandom random) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1), t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /** The confusion of {@code model} on {@code features} (rows labelled -1 are not counted), streamed in blocks. */
    public static Confusion evaluate(Features features, int[] labels, Model model, int blockRows) {
        int d = features.dim(), C = model.classes(), rows = features.rows();
        if (d != model.dim()) throw new IllegalArgumentException("features are " + d + " wide, the probe " + model.dim());
        if (labels.length != rows) throw new IllegalArgumentException(labels.length + " labels for " + rows + " rows");
        long[][] counts = new long[C][C];
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            int block = Math.max(1, Math.min(blockRows, rows));
            MemorySegment raw = arena.allocate((long) block * d * Float.BYTES, TrackedArena.ALIGNMENT);
            Matrix x = Matrix.of(arena.allocate((long) block * d * Float.BYTES, TrackedArena.ALIGNMENT), 0, block, d);
            Matrix z = Matrix.of(arena.allocate((long) block * C * Float.BYTES, TrackedArena.ALIGNMENT), 0, block, C);
            Matrix w = Matrix.of(arena.allocate((long) C * d * Float.BYTES, TrackedArena.ALIGNMENT), 0, C, d);
            for (int c = 0; c < C; c++) for (int j = 0; j < d; j++) w.set(c, j, model.weights()[c * d + j]);
            for (int first = 0; first < rows; first += block) {
                int count = Math.min(block, rows - first);
                features.read(first, count, raw);
                for (int r = 0; r < count; r++) standardiseInto(raw, (long) r * d, x, r, model.mean(), model.scale());
                Matrix xs = x.rowRange(0, count), zs = z.rowRange(0, count);
                Blas.sgemm(1f, xs, false, w, true, 0f, zs);
                for (int r = 0; r < count; r++) {
                    int gold = labels[first + r];
                    if (gold < 0) continue;
                    int best = 0;
                    float bestScore = zs.get(r, 0) + model.bias()[0];
                    for (int c = 1; c < C; c++) {
                        float s = zs.get(r, c) + model.bias()[c];
                        if (s > bestScore) {
                            bestScore = s;
                            best = c;
                        }
                    }
                    counts[gold][best]++;
                }
            }
        }
        return new Confusion(counts);
    }
}
