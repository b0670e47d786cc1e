import Foundation

/// Passkey hits and trials per (prompt length, depth bin): the data of the length × depth heatmap.
public struct PasskeyGrid: Equatable {
    /// Hits and trials of one cell.
    public struct Cell: Equatable {
        /// Correct trials.
        public var hits = 0
        /// All trials.
        public var trials = 0

        /// A cell of `hits` out of `trials`.
        public init(hits: Int = 0, trials: Int = 0) {
            self.hits = hits
            self.trials = trials
        }
    }

    /// Row keys, in the order given (the order of `--lengths`).
    public let lengths: [Int]
    /// Depth bins: bin b covers depths [b/bins, (b+1)/bins), the last one also 1.0.
    public let bins: Int
    /// `cells[row][bin]`.
    public private(set) var cells: [[Cell]]

    /// An empty grid of `lengths` rows and `bins` depth bins.
    public init(lengths: [Int], bins: Int = 10) {
        precondition(bins >= 1)
        self.lengths = lengths
        self.bins = bins
        cells = Array(repeating: Array(repeating: Cell(), count: bins), count: lengths.count)
    }

    /// The bin of `depth` (clamped to 0...1). A hair of slack so that depths given as decimals
    /// (0.3 · 10 = 2.9999…) land in the bin they name.
    public static func bin(depth: Double, bins: Int) -> Int {
        let d = min(max(depth, 0), 1)
        return min(bins - 1, Int((d * Double(bins) + 1e-9).rounded(.down)))
    }

    /// Counts one trial; lengths not in the grid are ignored.
    public mutating func record(length: Int, depth: Double, correct: Bool) {
        guard let row = lengths.firstIndex(of: length) else { return }
        let b = Self.bin(depth: depth, bins: bins)
        cells[row][b].trials += 1
        if correct { cells[row][b].hits += 1 }
    }

    /// Hits and trials of a whole row.
    public func total(row: Int) -> Cell {
        cells[row].reduce(into: Cell()) { $0.hits += $1.hits; $0.trials += $1.trials }
    }
}

/// "2k" for multiples of 1024, else the number.
public func lengthLabel(_ n: Int) -> String { n % 1024 == 0 && n > 0 ? "\(n / 1024)k" : "\(n)" }

/// Fill colour for an accuracy in 0...1: red → yellow → green; grey when there was no trial.
public func heatmapColor(accuracy: Double?) -> String {
    guard let a = accuracy else { return "#c8c8c8" }
    let red = (215.0, 48.0, 39.0), yellow = (250.0, 210.0, 70.0), green = (26.0, 150.0, 65.0)
    let t = min(max(a, 0), 1)
    let (from, to, u) = t < 0.5 ? (red, yellow, t * 2) : (yellow, green, (t - 0.5) * 2)
    func mix(_ x: Double, _ y: Double) -> Int { Int((x + (y - x) * u).rounded()) }
    return String(format: "#%02x%02x%02x", mix(from.0, to.0), mix(from.1, to.1), mix(from.2, to.2))
}

/// Escapes text for an XML text node or attribute value.
public func xmlEscaped(_ s: String) -> String {
    var out = ""
    for ch in s {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(ch)
        }
    }
    return out
}

/// A standalone SVG heatmap of passkey accuracy: one row per length, one column per depth bin plus an
/// "all" column of row totals; each cell coloured by accuracy (grey: no trial) and labelled hits/trials.
/// No scripts, fonts or external references, so any browser or `rsvg-convert` renders it.
public func renderHeatmapSVG(grid: PasskeyGrid, title: String, subtitle: String = "") -> String {
    let cellW = 64, cellH = 36, left = 96, top = subtitle.isEmpty ? 64 : 82, gap = 12
    let columns = grid.bins
    let gridW = columns * cellW
    let width = left + gridW + gap + cellW + 24
    let height = top + grid.lengths.count * cellH + 64
    var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" \
        font-family="sans-serif">

        """
    s += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>\n"
    s += "<text x=\"\(width / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(xmlEscaped(title))</text>\n"
    if !subtitle.isEmpty {
        s += "<text x=\"\(width / 2)\" y=\"44\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444444\">\(xmlEscaped(subtitle))</text>\n"
    }
    // Column headers: the depth range of each bin, then the totals column.
    for b in 0..<columns {
        let lo = Double(b) / Double(columns), hi = Double(b + 1) / Double(columns)
        let x = left + b * cellW + cellW / 2
        s += "<text class=\"col-label\" x=\"\(x)\" y=\"\(top - 8)\" text-anchor=\"middle\" font-size=\"11\">"
            + String(format: "%.2g–%.2g", lo, hi) + "</text>\n"
    }
    let totalX = left + gridW + gap
    s += "<text class=\"col-label\" x=\"\(totalX + cellW / 2)\" y=\"\(top - 8)\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\">all</text>\n"
    for (r, length) in grid.lengths.enumerated() {
        let y = top + r * cellH
        s += "<text class=\"row-label\" x=\"\(left - 8)\" y=\"\(y + cellH / 2 + 4)\" text-anchor=\"end\" font-size=\"12\">\(lengthLabel(length))</text>\n"
        let row = grid.cells[r].map { ($0, false) } + [(grid.total(row: r), true)]
        for (b, (cell, isTotal)) in row.enumerated() {
            let x = isTotal ? totalX : left + b * cellW
            let acc: Double? = cell.trials > 0 ? Double(cell.hits) / Double(cell.trials) : nil
            let tip = acc.map { String(format: "%@ tokens: %d/%d (%.0f%%)", lengthLabel(length), cell.hits, cell.trials, $0 * 100) }
                ?? "\(lengthLabel(length)) tokens: no trial"
            s += "<rect class=\"cell\" x=\"\(x)\" y=\"\(y)\" width=\"\(cellW)\" height=\"\(cellH)\" fill=\"\(heatmapColor(accuracy: acc))\" "
                + "stroke=\"#ffffff\" stroke-width=\"1\"><title>\(xmlEscaped(tip))</title></rect>\n"
            let label = cell.trials > 0 ? "\(cell.hits)/\(cell.trials)" : "–"
            s += "<text x=\"\(x + cellW / 2)\" y=\"\(y + cellH / 2 + 4)\" text-anchor=\"middle\" font-size=\"12\" fill=\"#111111\">\(label)</text>\n"
        }
    }
    // Axis titles.
    let bottom = top + grid.lengths.count * cellH
    s += "<text x=\"\(left + gridW / 2)\" y=\"\(bottom + 28)\" text-anchor=\"middle\" font-size=\"13\">key depth (share of filler before the key)</text>\n"
    s += "<text x=\"\(left + gridW / 2)\" y=\"\(bottom + 48)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444444\">"
        + "cell: hits/trials; colour: accuracy, red 0 → green 1, grey no trial</text>\n"
    let midY = top + grid.lengths.count * cellH / 2
    s += "<text x=\"18\" y=\"\(midY)\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 18 \(midY))\">prompt tokens</text>\n"
    s += "</svg>\n"
    return s
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so readers
/// never see a half-written file (a sweep rewrites its plot after every length).
public func writeAtomically(_ text: String, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8)) else {
        throw EvaluationError.cannotWrite(path: path, reason: "cannot create the temporary file \(tmp)")
    }
    guard rename(tmp, path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(atPath: tmp)
        throw EvaluationError.cannotWrite(path: path, reason: reason)
    }
}


/// Errors of the evaluation harness.
public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    /// An output file (a plot) could not be written.
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotWrite(let p, let r): "\(p): cannot write: \(r)"
        }
    }
}
