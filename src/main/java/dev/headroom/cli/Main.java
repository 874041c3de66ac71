package dev.headroom.cli;

import dev.headroom.blas.OpenBlasNotFoundException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code bin/headroom}: run, bench, info, demo. */
@Command(name = "headroom", mixinStandardHelpOptions = true, version = "headroom 0.1.0",
        description = "Multi-head attention on off-heap memory, with OpenBLAS.",
        subcommands = {RunCommand.class, BenchCommand.class, InfoCommand.class, DemoCommand.class, InspectCommand.class, PruneStudyCommand.class,
                EmbedCommand.class, CommandLine.HelpCommand.class})
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
                    || e instanceof OpenBlasNotFoundException || e instanceof java.io.IOException) {
                String what = e instanceof java.nio.file.NoSuchFileException ? "no such file: " + e.getMessage()
                        : e.getMessage() != null ? e.getMessage() : e.toString();
                commandLine.getErr().println("headroom: " + what);
                return 2;
            }
            throw e;
        });
        return cli.execute(args);
    }
}
