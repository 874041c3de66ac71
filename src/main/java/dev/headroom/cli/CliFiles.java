package dev.headroom.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;

/**
 * The commands' file access, so that every failure names the file, what was being done with it
 * and why, in words a person can act on. The JDK's own messages often name only one of these
 * ({@code Input length = 1}, {@code Input/output error}, a bare path): outputs are checked before
 * any work starts, and reads and writes are wrapped so that what fails says which file and which
 * operation.
 */
final class CliFiles {
    private CliFiles() {}

    /** An I/O action of a command. */
    interface IoAction<T> {
        T run() throws IOException;
    }

    /** An I/O action without a result. */
    interface IoRunnable {
        void run() throws IOException;
    }

    /** An I/O failure whose message already names the file, the operation and the reason; {@link Main} prints it as is. */
    static final class FileProblem extends IOException {
        FileProblem(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Runs {@code read}; an I/O failure becomes "cannot read WHAT FILE: reason". */
    static <T> T read(Path file, String what, IoAction<T> read) throws IOException {
        try {
            return read.run();
        } catch (FileProblem e) {
            throw e;
        } catch (IOException e) {
            throw new FileProblem("cannot read " + what + " " + file + ": " + reason(e, file), e);
        } catch (UncheckedIOException e) {
            throw new FileProblem("cannot read " + what + " " + file + ": " + reason(e.getCause(), file), e);
        }
    }

    /** Runs {@code write}; an I/O failure becomes "cannot write WHAT to FILE: reason". */
    static void write(Path file, String what, IoRunnable write) throws IOException {
        try {
            write.run();
        } catch (FileProblem e) {
            throw e;
        } catch (IOException e) {
            throw new FileProblem("cannot write " + what + " to " + file + ": " + reason(e, file), e);
        } catch (UncheckedIOException e) {
            throw new FileProblem("cannot write " + what + " to " + file + ": " + reason(e.getCause(), file), e);
        }
    }

    /**
     * The lines of a UTF-8 text file. Bytes that are not UTF-8 are refused with their line, column
     * and byte offset (the JDK says only "Input length = 1").
     */
    static List<String> readUtf8Lines(Path file, String what) throws IOException {
        byte[] bytes = read(file, what, () -> Files.readAllBytes(file));
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(bytes.length + 1); // UTF-8 never decodes to more chars than bytes
        CoderResult result = decoder.decode(in, out, true);
        if (!result.isError()) result = decoder.flush(out);
        if (result.isError()) {
            int offset = in.position(), line = 1, lineStart = 0; // the decoder stops at the first bad byte
            for (int i = 0; i < offset; i++) {
                if (bytes[i] == '\n') {
                    line++;
                    lineStart = i + 1;
                }
            }
            StringBuilder bad = new StringBuilder();
            for (int i = offset; i < Math.min(bytes.length, offset + Math.max(1, result.length())); i++) {
                bad.append(String.format(" 0x%02X", bytes[i] & 0xFF));
            }
            throw new IllegalArgumentException(what + " " + file + " must be UTF-8 text, but line " + line + " (byte "
                    + (offset - lineStart + 1) + " of the line, byte offset " + offset + " in the file) holds" + bad
                    + ", which is not UTF-8; convert the file, e.g. iconv -f WINDOWS-1252 -t UTF-8 " + file);
        }
        return out.flip().toString().lines().toList();
    }

    /**
     * Refuses, before any work, an output file that cannot be written: a directory, an existing
     * file that is not writable, or a path under a file or under a directory that is not writable
     * (missing directories are created by the writers, so the nearest existing one is checked).
     */
    static void checkOutputFile(Path file, String option) {
        String subject = option + " " + file;
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException(subject + " is a directory; give a file name, e.g. " + file.resolve("out.npy"));
        }
        if (Files.exists(file) && !Files.isWritable(file)) {
            throw new IllegalArgumentException("cannot write " + subject + ": the file exists and " + notWritable(file));
        }
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) checkNearestDirectory(parent, subject);
        String kernel = kernelFileSystem(Files.exists(file) ? file : parent);
        if (kernel != null) {
            throw new IllegalArgumentException("cannot write " + subject + ": it is on the " + kernel + " file system, whose "
                    + "files are kernel interfaces, not storage (writes fail or change kernel settings); write to a regular directory");
        }
    }

    /** "proc" or "sysfs" when {@code p} is on one of them, else null (unknown counts as a regular file system). */
    private static String kernelFileSystem(Path p) {
        try {
            String type = p == null || !Files.exists(p) ? "" : Files.getFileStore(p).type();
            return type.equals("proc") || type.equals("sysfs") ? type : null;
        } catch (IOException | SecurityException e) {
            return null;
        }
    }

    /** Refuses, before any work, an output directory that cannot be created or written. */
    static void checkOutputDirectory(Path dir, String option) {
        String subject = option + " " + dir;
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new IllegalArgumentException("cannot write into " + subject + ": it is a file, not a directory");
        }
        checkNearestDirectory(dir.toAbsolutePath(), subject);
    }

    /** The nearest existing ancestor of {@code dir} (itself included) must be a directory this process can write. */
    private static void checkNearestDirectory(Path dir, String subject) {
        Path p = dir;
        while (p != null && !Files.exists(p)) p = p.getParent();
        if (p == null) return;
        if (!Files.isDirectory(p)) {
            throw new IllegalArgumentException("cannot write " + subject + ": " + p + " is a file, not a directory");
        }
        if (!Files.isWritable(p)) {
            throw new IllegalArgumentException("cannot write " + subject + ": directory " + p + " " + notWritable(p));
        }
    }

    /** Why an existing path is not writable: a read-only file system, or its owner and permissions. */
    private static String notWritable(Path p) {
        try {
            if (Files.getFileStore(p).isReadOnly()) return "is on a read-only file system (" + Files.getFileStore(p) + ")";
            PosixFileAttributes a = Files.readAttributes(p, PosixFileAttributes.class);
            return "is not writable by user " + System.getProperty("user.name") + " (owner " + a.owner().getName()
                    + ", permissions " + PosixFilePermissions.toString(a.permissions()) + ")";
        } catch (IOException | UnsupportedOperationException e) {
            return "is not writable by user " + System.getProperty("user.name");
        }
    }

    /**
     * An I/O failure in words: the JDK's exceptions for missing files, denied access and the like
     * carry only a path; the others carry the operating system's message. A file other than
     * {@code target} (a parent directory, say) is named.
     */
    static String reason(IOException e, Path target) {
        if (e instanceof CharacterCodingException) return "not valid UTF-8 text (" + e + ")";
        if (!(e instanceof FileSystemException f)) {
            String m = e.getMessage();
            if (m == null || m.isBlank()) return e.getClass().getSimpleName();
            // Readers that name the file themselves ("x.npy: not an .npy file ...") need not have it said twice.
            return target != null && m.startsWith(target + ": ") ? m.substring(target.toString().length() + 2) : m;
        }
        String why = f.getReason() != null ? f.getReason() : switch (f) {
            case NoSuchFileException x -> "no such file or directory";
            case AccessDeniedException x -> "permission denied";
            case NotDirectoryException x -> "not a directory";
            case FileAlreadyExistsException x -> "already exists (and is not a directory)";
            case DirectoryNotEmptyException x -> "directory not empty";
            default -> f.getClass().getSimpleName();
        };
        String file = f.getFile();
        boolean other = file != null && (target == null || !Path.of(file).toAbsolutePath().equals(target.toAbsolutePath()));
        return (other ? file + ": " : "") + why + (f.getOtherFile() != null ? " (" + f.getOtherFile() + ")" : "");
    }
}
