package dev.headroom.cli;

import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.UsageMessageSpec;

import java.lang.reflect.AnnotatedElement;
import java.util.ArrayList;
import java.util.IllegalFormatException;
import java.util.List;
import java.util.Locale;

/**
 * Help text that picocli cannot print. Picocli passes every description, header and footer line
 * through {@link String#format} (so that {@code %n} is a line break); a line with a bare
 * {@code %}, such as "within 5 % of", fails there, and picocli then prints a warning and the line
 * with its {@code %n} unreplaced at every {@code --help}. Each module's tests run
 * {@link #unformattable} over its command tree ({@code headroom}, {@code serve}, Spark's jobs).
 */
public final class HelpText {
    private HelpText() {}

    /** Every help line of {@code root} and its subcommands that does not format, named by command and option. */
    public static List<String> unformattable(CommandLine root) {
        List<String> problems = new ArrayList<>();
        collect(root.getCommandSpec(), problems);
        return problems;
    }

    private static void collect(CommandSpec spec, List<String> problems) {
        UsageMessageSpec usage = spec.usageMessage();
        String name = spec.qualifiedName();
        check(name + " description", usage.description(), problems);
        check(name + " header", usage.header(), problems);
        check(name + " footer", usage.footer(), problems);
        for (ArgSpec arg : spec.args()) {
            String what = arg.isOption() ? String.join("/", ((CommandLine.Model.OptionSpec) arg).names()) : arg.paramLabel();
            check(name + " " + what, declared(arg), problems);
        }
        for (CommandLine sub : spec.subcommands().values()) collect(sub.getCommandSpec(), problems);
    }

    /**
     * An option's or parameter's description as its annotation declares it: {@link ArgSpec#description()} returns it
     * already formatted (or, when that failed, as declared), so it cannot be checked again.
     */
    private static String[] declared(ArgSpec arg) {
        if (arg.userObject() instanceof AnnotatedElement element) {
            CommandLine.Option option = element.getAnnotation(CommandLine.Option.class);
            if (option != null) return option.description();
            CommandLine.Parameters parameters = element.getAnnotation(CommandLine.Parameters.class);
            if (parameters != null) return parameters.description();
        }
        return new String[0]; // built programmatically: picocli formats what it is given, nothing declared to check
    }

    private static void check(String where, String[] lines, List<String> problems) {
        for (String line : lines) {
            try {
                String.format(Locale.ROOT, line);
            } catch (IllegalFormatException e) {
                problems.add(where + ": " + e + " in \"" + line + "\"");
            }
        }
    }
}
