package dev.headroom.server;

import dev.langchain4j.data.embedding.Embedding;
import dev.langchain4j.data.segment.TextSegment;
import dev.langchain4j.model.StreamingResponseHandler;
import dev.langchain4j.model.openai.OpenAiEmbeddingModel;
import dev.langchain4j.model.openai.OpenAiLanguageModel;
import dev.langchain4j.model.openai.OpenAiStreamingLanguageModel;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.Response;
import dev.headroom.generate.Generator;
import dev.headroom.memory.TrackedArena;
import dev.headroom.serve.Engine;
import dev.headroom.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A client we did not write, LangChain4j's OpenAI module, against the server on 127.0.0.1:
 * completion (its default of 16 tokens), streaming, and embeddings.
 */
class OpenAiClientTest {
    private static TestStack.Server server;

    @BeforeAll
    static void start() throws Exception {
        server = new TestStack.Server(Engine.Config.defaults().withKvBudget(64L << 20));
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    @Test
    void completionIsWhatGenerateGreedyGives() {
        OpenAiLanguageModel model = OpenAiLanguageModel.builder().baseUrl(server.base()).apiKey("not-needed").modelName("tiny")
                .temperature(0.0).timeout(Duration.ofSeconds(120)).build();
        String prompt = "The Fulton County Grand Jury said Friday";
        Response<String> r = model.generate(prompt);
        Generator.Output expected = Greedy.generate(prompt, 16); // LangChain4j sends no max_tokens: OpenAI's default, 16
        Greedy.assertSameText("completion", prompt, expected, r.content());
        assertEquals(TestStack.TOKENIZER.encode(prompt).length, r.tokenUsage().inputTokenCount());
        assertEquals(expected.tokens().length, r.tokenUsage().outputTokenCount());
        assertEquals(expected.finish() == Generator.Finish.EOS ? FinishReason.STOP : FinishReason.LENGTH, r.finishReason());
    }

    @Test
    void streamingDeliversTheSameTextPieceByPiece() throws Exception {
        OpenAiStreamingLanguageModel model = OpenAiStreamingLanguageModel.builder().baseUrl(server.base()).apiKey("not-needed")
                .modelName("tiny").temperature(0.0).timeout(Duration.ofSeconds(120)).build();
        String prompt = "It was a cold night in the city, and";
        List<String> pieces = new ArrayList<>();
        CompletableFuture<Response<String>> done = new CompletableFuture<>();
        model.generate(prompt, new StreamingResponseHandler<>() {
            @Override
            public void onNext(String token) {
                pieces.add(token);
            }

            @Override
            public void onComplete(Response<String> response) {
                done.complete(response);
            }

            @Override
            public void onError(Throwable error) {
                done.completeExceptionally(error);
            }
        });
        Response<String> r = done.get(120, TimeUnit.SECONDS);
        Generator.Output expected = Greedy.generate(prompt, 16);
        Greedy.assertSameText("stream", prompt, expected, String.join("", pieces));
        assertEquals(String.join("", pieces), r.content());
        assertTrue(pieces.size() > 1, "the text came in " + pieces.size() + " piece(s)");
        assertEquals(expected.tokens().length, r.tokenUsage().outputTokenCount()); // stream_options.include_usage
        assertEquals(expected.finish() == Generator.Finish.EOS ? FinishReason.STOP : FinishReason.LENGTH, r.finishReason());
    }

    @Test
    void embeddingsAreWhatEmbedGives() {
        OpenAiEmbeddingModel model = OpenAiEmbeddingModel.builder().baseUrl(server.base()).apiKey("not-needed").modelName("minilm")
                .timeout(Duration.ofSeconds(120)).build();
        List<String> texts = List.of("The jury praised the city.", "An election report", "Atlanta's recent primary election produced no evidence");
        Response<List<Embedding>> r = model.embedAll(texts.stream().map(TextSegment::from).toList());
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            Tensor expected = TestStack.ENCODER.embed(texts, arena); // headroom embed's computation of the same list
            for (int i = 0; i < texts.size(); i++) {
                float[] row = new float[384];
                for (int j = 0; j < 384; j++) row[j] = expected.at(i, j);
                assertArrayEquals(row, r.content().get(i).vector(), "input " + i); // a request alone: bitwise
            }
        }
        int tokens = 0;
        for (String t : texts) tokens += TestStack.ENCODER.tokenizer().encode(t).length;
        assertEquals(tokens, r.tokenUsage().inputTokenCount());
        assertEquals(384, model.embed("one more").content().dimension());
    }
}
