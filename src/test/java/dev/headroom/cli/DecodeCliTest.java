package dev.headroom.cli;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.io.Npy;
import dev.headroom.io.SafeTensors;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static dev.headroom.cli.CliTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** `run --decode` equals `run` with the same position options; `plan` and `bench --decode` answer. */
class DecodeCliTest {
    @TempDir
    Path dir;

    @Test
    void decodingThroughTheCacheWritesTheWholeForwardsOutput() throws Exception {
        AttentionConfig c = AttentionConfig.of(32, 4).withKvHeads(2);
        try (Arena arena = Arena.ofShared()) {
            Path weights = dir.resolve("w.safetensors"), in = dir.resolve("x.npy");
            SafeTensors.write(weights, AttentionWeights.random(c, true, 3, arena).stateDict());
            Npy.write(in, Tensor.uniform(arena, 4, 1, 2, 41, 32));
            String[][] variants = {
                    {"--rope-theta", "10000"},
                    {"--rope-theta", "500", "--rope-layout", "pairs", "--rotary-dims", "4"},
                    {"--alibi"},
                    {"--rope-theta", "10000", "--sinks", "3", "--window", "9"},
            };
            for (String[] positions : variants) {
                float[] whole = output(weights, in, positions, List.of(), arena);
                float[] decoded = output(weights, in, positions, List.of("--decode", "--prefill", "13", "--block-size", "5"), arena);
                double max = 0, err = 0;
                for (int i = 0; i < whole.length; i++) {
                    max = Math.max(max, Math.abs(whole[i]));
                    err = Math.max(err, Math.abs(whole[i] - decoded[i]));
                }
                assertTrue(err <= 2e-5 * max, String.join(" ", positions) + ": max |Δ| " + err + " of " + max);
            }
        }
    }

    private float[] output(Path weights, Path in, String[] positions, List<String> extra, Arena arena) throws Exception {
        Path out = dir.resolve("y" + System.nanoTime() + ".npy");
        List<String> args = new ArrayList<>(List.of("run", "--weights", weights.toString(), "--input", in.toString(), "--output",
                out.toString(), "--heads", "4", "--kv-heads", "2", "--causal", "--threads", "2"));
        args.addAll(List.of(positions));
        args.addAll(extra);
        Object[] res = run(args.toArray(String[]::new));
        assertEquals(0, res[0], String.valueOf(res[2]));
        if (!extra.isEmpty()) assertTrue(((String) res[1]).contains("prefill 13, then 28 decode steps"), (String) res[1]);
        return Npy.read(out, arena).toArray();
    }

    @Test
    void decodeNeedsACausalSelfAttention() throws Exception {
        try (Arena arena = Arena.ofShared()) {
            Path weights = dir.resolve("w.safetensors"), in = dir.resolve("x.npy");
            SafeTensors.write(weights, AttentionWeights.random(AttentionConfig.of(16, 2), true, 3, arena).stateDict());
            Npy.write(in, Tensor.uniform(arena, 4, 1, 5, 16));
            Object[] res = run("run", "--weights", weights.toString(), "--input", in.toString(), "--output", dir.resolve("y.npy").toString(),
                    "--heads", "2", "--decode");
            assertEquals(2, res[0]);
            assertTrue(((String) res[2]).contains("--decode computes causal self-attention: it needs --causal"), (String) res[2]);
            res = run("run", "--weights", weights.toString(), "--input", in.toString(), "--output", dir.resolve("y.npy").toString(),
                    "--heads", "2", "--sinks", "2");
            assertEquals(2, res[0]);
            assertTrue(((String) res[2]).contains("--sinks and --window go together"), (String) res[2]);
        }
    }

    @Test
    void planSaysHowManySequencesFit() {
        Object[] res = run("plan", "--layers", "32", "--kv-heads", "8", "--head-dim", "128", "--context", "4096", "--budget", "16g",
                "--kv-dtype", "int8");
        assertEquals(0, res[0], String.valueOf(res[2]));
        String out = (String) res[1];
        // int8: 32·8·(2·128·16 + 2·16·4) B = 1,081,344 B per block; 16 GiB / that = 15,887 blocks; 256 blocks per 4,096 tokens
        assertTrue(out.contains("15,887 blocks = 254,192 tokens"), out);
        assertTrue(out.matches("(?s).*4,096 +62 .*"), out);
    }

    @Test
    void benchDecodeReportsBandwidthAndCells() {
        Object[] res = run("bench", "--decode", "--shape", "small", "--contexts", "64", "--sequences", "2", "--kv-dtype", "int8",
                "--repeats", "2", "--threads", "1");
        assertEquals(0, res[0], String.valueOf(res[2]));
        String out = (String) res[1];
        assertTrue(out.contains("streaming read bandwidth on 1 threads, measured now"), out);
        assertTrue(out.matches("(?s).*int8 +64 +2 .*"), out);
    }
}
