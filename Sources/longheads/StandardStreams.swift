#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's standard streams, as the shell handed them over.
enum StandardStreams {
    /// Started with fd 0, 1 or 2 closed (`<&-`, `>&-`), the next `open` would get that number, and a model
    /// or store file would then be read as stdin or overwritten by output. Each closed one is therefore taken
    /// by /dev/null opened in the *other* direction: reading a closed stdin and writing a closed stdout then
    /// fail with EBADF, which the readers and `Output` name (exit 66 / 74), instead of silently reading nothing
    /// or writing nowhere.
    static func reserve() {
        for (fd, flags) in [(Int32(0), O_WRONLY), (1, O_RDONLY), (2, O_RDONLY)] where fcntl(fd, F_GETFD) < 0 && errno == EBADF {
            let placeholder = open("/dev/null", flags)
            if placeholder >= 0 && placeholder != fd {
                dup2(placeholder, fd)
                close(placeholder)
            }
        }
    }
}
