// Codepoint classes exactly as llama.cpp's unicode tables define them (its unicode-data.cpp is generated
// from UnicodeData.txt general categories): letter = L*, number = N*, mark = M*, punctuation = P*,
// symbol = S*, separator = Z*, control = Cc/Cf/Co/Cs; whitespace is the White_Space property.
// Unassigned codepoints (Cn) get no class bit but are still "in range" for the splitters.

enum CPClass {
    static let number: UInt8 = 1 << 0
    static let letter: UInt8 = 1 << 1
    static let whitespace: UInt8 = 1 << 2
    static let punctuation: UInt8 = 1 << 3
    static let symbol: UInt8 = 1 << 4
    static let mark: UInt8 = 1 << 5
    static let separator: UInt8 = 1 << 6
    static let control: UInt8 = 1 << 7

    /// Flags for every BMP codepoint, built once: a table lookup is far cheaper than asking the
    /// Unicode property tables per character in a multi-megabyte document.
    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for cp in 0..<0x10000 {
            t[cp] = compute(UInt32(cp))
        }
        return t
    }()

    @inline(__always)
    static func of(_ cp: UInt32) -> UInt8 {
        cp < 0x10000 ? bmp.withUnsafeBufferPointer { $0[Int(cp)] } : compute(cp)
    }

    static func compute(_ cp: UInt32) -> UInt8 {
        // Surrogates cannot be Unicode.Scalar; llama.cpp classes them Cs = control.
        guard let s = Unicode.Scalar(cp) else { return control }
        let p = s.properties
        var f: UInt8
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f = letter
        case .decimalNumber, .letterNumber, .otherNumber: f = number
        case .nonspacingMark, .spacingMark, .enclosingMark: f = mark
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: f = punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: f = symbol
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: f = separator
        case .control, .format, .surrogate, .privateUse: f = control
        case .unassigned: f = 0
        @unknown default: f = 0
        }
        if p.isWhitespace { f |= whitespace }
        return f
    }
}

/// The GPT-2 byte↔unicode alphabet: printable bytes stand for themselves, the other 68 bytes are
/// shifted to U+0100... in byte order, so every byte sequence is a printable string.
enum ByteLevel {
    /// Codepoint that stands for each byte.
    static let byteToCodepoint: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                map[b] = UInt32(b)
            } else {
                map[b] = 256 + n
                n += 1
            }
        }
        return map
    }()

    /// Inverse of `byteToCodepoint` for codepoints below 0x144; -1 where a codepoint stands for no byte.
    static let codepointToByte: [Int16] = {
        var inv = [Int16](repeating: -1, count: 0x144)
        for (b, cp) in byteToCodepoint.enumerated() { inv[Int(cp)] = Int16(b) }
        return inv
    }()

    /// The vocabulary string of a single raw byte.
    static func string(forByte b: UInt8) -> String {
        String(Character(Unicode.Scalar(byteToCodepoint[Int(b)])!))
    }

    /// Raw bytes of a byte-level token string; codepoints outside the alphabet are kept as their UTF-8
    /// (llama.cpp writes an "[UNK_BYTE_…]" marker instead; real vocabularies never hit this).
    static func decode(_ token: String) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            let v = s.value
            if v < 0x144, codepointToByte[Int(v)] >= 0 {
                out.append(UInt8(codepointToByte[Int(v)]))
            } else {
                out.append(contentsOf: Array(String(s).utf8))
            }
        }
        return out
    }
}
