import Foundation
import Pipeline
import ArgumentParser

/// The entry point: standard streams are checked before any file is opened, then the command runs.
@main
enum Main {
    static func main() async {
        StandardStreams.reserve()
        // A reader that goes away (`… | head`) is an EPIPE from `Output`, not a kill: temporary stores are removed.
        signal(SIGPIPE, SIG_IGN)
        TemporaryStores.removeStale()
        await LongHeadsCommand.main()
    }
}

/// `longheads`: read documents far longer than the model was trained on, on CPU.
struct LongHeadsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "longheads",
        abstract: "Run Llama-family GGUF models on CPU over very long documents (LongHeads attention).",
        discussion: """
            stdout carries data only; progress and logs go to stderr.
            --model takes a GGUF path or a model name (`longheads model list`; default \
            smollm2-135m, SmolLM2-135M-Instruct Q4_1), fetched and verified on first use into \
            $LONGHEADS_HOME/models (default ~/.cache/longheads/models).

            Exit codes:
              0   success (filter: also when no record passed or the input was empty)
              1   internal error
              64  usage error (bad option or argument)
              65  bad input data: empty prompt or document, invalid UTF-8, a bad
                  --questions line or filter record (its number is named),
                  damaged store, another model's store
              66  input or model file missing or unreadable, a directory as
                  input, a closed standard input
              69  model fetch failed (pip unavailable, network, a part or the
                  whole failing its size or sha256 check)
              70  model file invalid (truncated, not GGUF, unsupported type or
                  architecture)
              73  cannot create the store: --store DIR is a non-empty directory
                  of other files, or a store file name in it is a symlink
                  (nothing is written)
              74  I/O error while writing (also a full or closed stdout)
              130 interrupted by Ctrl-C (143: SIGTERM); ingest first commits the
                  chunks done; temporary stores (ask FILE, filter, summarize)
                  are removed (also those of crashed runs, at the next start)
              141 the reader of stdout went away (SIGPIPE): quiet stop
            """,
        subcommands: [Generate.self, Ingest.self, Ask.self, Filter.self, Summarize.self, Verify.self, Tokenize.self, Bench.self, ModelCommand.self, CorpusCommand.self])
}
