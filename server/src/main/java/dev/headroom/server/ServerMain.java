package dev.headroom.server;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.UncheckedIOException;

/** {@code bin/headroom serve} and {@code bin/headroom serve-bench}: the commands of the server module. */
@Command(name = "headroom", mixinStandardHelpOptions = true, version = "headroom 0.1.0",
        description = "The OpenAI-compatible server of Headroom.",
        subcommands = {ServeCommand.class, ServeBench.class, CommandLine.HelpCommand.class})
public final class ServerMain implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.setProperty("java.awt.headless", "true"); // serve-bench's plots render without a display
        int code = execute(args);
        if (code != 0 || !ServeCommand.SERVING.get()) System.exit(code);
    }

    /** Runs a command and returns its exit code; expected failures are one line, not a stack trace. */
    static int execute(String... args) {
        CommandLine cli = new CommandLine(new ServerMain());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            if (e instanceof IllegalArgumentException || e instanceof IllegalStateException || e instanceof IOException
                    || e instanceof UncheckedIOException) {
                commandLine.getErr().println("headroom: " + (e.getMessage() != null ? e.getMessage() : e.toString()));
                return 2;
            }
            throw e;
        });
        return cli.execute(args);
    }

    /** Parses sizes like 512m, 2g, 1048576. */
    static final class ByteSize implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String v) {
            String t = v.trim().toLowerCase(java.util.Locale.ROOT);
            long unit = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
                case 'k' -> 1L << 10;
                case 'm' -> 1L << 20;
                case 'g' -> 1L << 30;
                default -> 1;
            };
            String digits = unit == 1 ? t : t.substring(0, t.length() - 1);
            try {
                return Math.round(Double.parseDouble(digits) * unit);
            } catch (NumberFormatException e) {
                throw new CommandLine.TypeConversionException("'" + v + "' is not a size (like 512m or 2g)");
            }
        }
    }
}
