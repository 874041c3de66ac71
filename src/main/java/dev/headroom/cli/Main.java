package dev.headroom.cli;

import dev.headroom.blas.OpenBlasNotFoundException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileSystemException;
import java.nio.file.Path;

/** {@code bin/headroom}: run, bench, info, demo, inspect, prune-study, embed, generate, plan, probe. */
@Command(name = "headroom", mixinStandardHelpOptions = true, version = "headroom 0.1.0",
        description = "Multi-head attention on off-heap memory, with OpenBLAS.",
        footer = {"", "Also: serve (an OpenAI-compatible server of the tiny decoder, or another byte-vocabulary Llama model, and MiniLM) and serve-bench (its load test), "
                + "in the server module that bin/headroom builds on first use: headroom serve --help."},
        subcommands = {RunCommand.class, BenchCommand.class, InfoCommand.class, DemoCommand.class, InspectCommand.class, PruneStudyCommand.class,
                EmbedCommand.class, GenerateCommand.class, PlanCommand.class, ProbeCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.setProperty("java.awt.headless", "true"); // charts and heatmaps render without a display
        System.exit(execute(args));
    }

    /** Runs the CLI and returns its exit code (tests call this; only {@link #main} exits). */
    public static int execute(String... args) {
        CommandLine cli = new CommandLine(new Main());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            // Expected failures (bad input, missing files or library) get their message, not a stack trace.
            if (e instanceof IllegalArgumentException || e instanceof IllegalStateException
                    || e instanceof OpenBlasNotFoundException || e instanceof IOException || e instanceof UncheckedIOException) {
                commandLine.getErr().println("headroom: " + message(e, parseResult.subcommand()));
                return 2;
            }
            throw e;
        });
        try {
            return cli.execute(args);
        } catch (OutOfMemoryError e) {
            // An Error escapes picocli's handler. Say what ran out and what to change, without a stack trace.
            boolean heap = e.getMessage() != null && e.getMessage().contains("Java heap");
            cli.getErr().println("headroom: out of memory (" + e.getMessage() + "): "
                    + (heap ? "the Java heap is full; raise it with HEADROOM_JAVA_OPTS=-Xmx<size> (now "
                    + dev.headroom.memory.OffHeap.format(Runtime.getRuntime().maxMemory()) + ")"
                    : "off-heap memory could not be allocated; give the forward a smaller --budget so it is refused up front, "
                    + "or run on a smaller problem (" + dev.headroom.memory.MemoryLimits.explain() + ")"));
            return 3;
        }
    }

    /**
     * The one line printed for an expected failure. The commands read and write through
     * {@link CliFiles}, whose messages name the file and the operation; an I/O failure that
     * escaped it still names its file when the JDK gave one, and the command that failed.
     */
    static String message(Exception e, CommandLine.ParseResult command) {
        if (e instanceof UncheckedIOException u) return message(u.getCause(), command);
        if (e instanceof CliFiles.FileProblem || !(e instanceof IOException io)) {
            return e.getMessage() != null ? e.getMessage() : e.toString();
        }
        String doing = command == null ? "" : " in '" + command.commandSpec().name() + "'";
        if (io instanceof FileSystemException f && f.getFile() != null) {
            return "I/O error" + doing + " on " + f.getFile() + ": " + CliFiles.reason(f, Path.of(f.getFile()));
        }
        return "I/O error" + doing + " (" + io.getClass().getSimpleName() + "): " + CliFiles.reason(io, null);
    }
}
