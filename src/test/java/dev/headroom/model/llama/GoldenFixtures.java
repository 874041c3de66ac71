package dev.headroom.model.llama;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.headroom.io.Npy;
import dev.headroom.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The golden fixtures of the tiny decoder, written by {@code tools/tiny/golden.py} from the
 * exported weights with PyTorch (an implementation this project did not write computing the same
 * model): per prompt, the logits at every position of the float64 and float32 models and the
 * float32 model's greedy continuation.
 */
public final class GoldenFixtures {
    static final String DIR = "/dev/headroom/models/tiny/golden/";

    private GoldenFixtures() {}

    /** One prompt's fixture: its ids, PyTorch's greedy continuation, the smallest top-2 gap met, and the logits files. */
    public record Fixture(String name, String prompt, int[] promptIds, int[] continuation, double minMargin, String logitsF64,
                          String logitsF32) {
        /** The float64 model's logits, (n, V), rounded to float32 by golden.py. */
        public Tensor f64(Arena arena) throws IOException {
            return read(logitsF64, arena);
        }

        /** PyTorch's float32 logits, (n, V). */
        public Tensor f32(Arena arena) throws IOException {
            return read(logitsF32, arena);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    public static List<Fixture> all() throws IOException {
        try (InputStream in = GoldenFixtures.class.getResourceAsStream(DIR + "golden.json")) {
            if (in == null) throw new IOException("classpath resource " + DIR + "golden.json not found");
            JsonObject root = JsonParser.parseReader(new InputStreamReader(in, StandardCharsets.UTF_8)).getAsJsonObject();
            List<Fixture> out = new ArrayList<>();
            for (JsonElement e : root.getAsJsonArray("fixtures")) {
                JsonObject f = e.getAsJsonObject();
                out.add(new Fixture(f.get("name").getAsString(), f.get("prompt").getAsString(), ints(f.getAsJsonArray("prompt_ids")),
                        ints(f.getAsJsonArray("continuation_ids")), f.get("continuation_min_top2_margin").getAsDouble(),
                        f.get("logits_f64").getAsString(), f.get("logits_f32").getAsString()));
            }
            return out;
        }
    }

    private static int[] ints(JsonArray a) {
        int[] v = new int[a.size()];
        for (int i = 0; i < v.length; i++) v[i] = a.get(i).getAsInt();
        return v;
    }

    private static Tensor read(String file, Arena arena) throws IOException {
        try (InputStream in = GoldenFixtures.class.getResourceAsStream(DIR + file)) {
            if (in == null) throw new IOException("classpath resource " + DIR + file + " not found");
            return Npy.read(in, DIR + file, arena);
        }
    }
}
