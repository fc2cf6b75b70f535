import Foundation
import ReproBytes
import ReproStorage

/// SVHN as torchvision loads it: `train_32x32.mat` and `test_32x32.mat`, each with `X` (32 × 32 × 3 × N
/// uint8, column-major as MATLAB stores it) and `y` (N × 1, 1…10 with 10 meaning digit 0). Images become
/// N × 3 × 32 × 32 as torchvision's `np.transpose(X, (3, 2, 0, 1))`, labels 10 → 0. Read from MAT level 5
/// files (uncompressed, or with `miCOMPRESSED` zlib variables) and MAT 7.3 files (HDF5).
public enum SVHN {
    public static let files = (train: "train_32x32.mat", test: "test_32x32.mat")
    public static let size = 32

    /// Loads both files from `directory` or `directory/SVHN/`. The fingerprint of each file is the SHA-256
    /// of what it decodes to (the images in torchvision's order, then the labels), so the same data saved in
    /// another MAT format has the same fingerprint.
    public static func load(directory: String) throws(DataError) -> ImageDataset {
        var fingerprints = [(String, String)]()
        func split(_ file: String) throws(DataError) -> ImageSplit {
            let candidates = [directory + "/" + file, directory + "/SVHN/" + file]
            guard let path = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
                var isDirectory: ObjCBool = false
                if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
                    throw DataError("\(directory): data directory does not exist")
                }
                throw DataError("\(directory): no \(file) here or in SVHN/")
            }
            let s = try read(path)
            fingerprints.append((file, SHA256.hex(s.images + s.labels)))
            return s
        }
        let train = try split(files.train), test = try split(files.test)
        return ImageDataset(name: .svhn, train: train, test: test, fingerprints: fingerprints)
    }

    /// Reads one SVHN .mat file (any of the three formats).
    public static func read(_ path: String) throws(DataError) -> ImageSplit {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot read the file") }
        let bytes = [UInt8](data)
        guard bytes.count >= 128 else { throw DataError("\(path): \(bytes.count) bytes, too short for a MAT file") }
        let text = String(decoding: bytes.prefix(116), as: UTF8.self)
        let variables: (x: MATVariable, y: MATVariable)
        if text.hasPrefix("MATLAB 7.3 MAT-file") {
            variables = try MAT73.read(path)
        } else if text.hasPrefix("MATLAB 5.0 MAT-file") {
            variables = try MAT5.read(bytes, path: path)
        } else {
            throw DataError("\(path): not a MAT file (no 'MATLAB 5.0' or 'MATLAB 7.3' header)")
        }
        return try split(x: variables.x, y: variables.y, path: path)
    }

    /// Checks the two variables and rearranges them as torchvision does.
    static func split(x: MATVariable, y: MATVariable, path: String) throws(DataError) -> ImageSplit {
        guard x.matlabClass == "uint8" else { throw DataError("\(path): X is of class \(x.matlabClass), expected uint8") }
        guard x.dimensions.count == 4, x.dimensions[0] == size, x.dimensions[1] == size, x.dimensions[2] == 3, x.dimensions[3] >= 1 else {
            throw DataError("\(path): X is \(x.dimensions.map(String.init).joined(separator: "×")), expected 32×32×3×N")
        }
        let n = x.dimensions[3]
        guard y.matlabClass == "uint8" || y.matlabClass == "double" else {
            throw DataError("\(path): y is of class \(y.matlabClass), expected uint8 or double")
        }
        guard y.dimensions == [n, 1] || y.dimensions == [1, n] else {
            throw DataError("\(path): y is \(y.dimensions.map(String.init).joined(separator: "×")), expected \(n)×1 (one label per image of X)")
        }
        guard case .bytes(let pixels) = x.values, pixels.count == n * 3 * size * size else {
            throw DataError("\(path): X holds \(x.values.count) values, expected \(n * 3 * size * size)")
        }
        var labels = [UInt8]()
        labels.reserveCapacity(n)
        for (i, v) in y.values.doubles.enumerated() {
            guard v == v.rounded(), v >= 1, v <= 10 else { throw DataError("\(path): label \(v) at index \(i) is outside 1...10") }
            labels.append(v == 10 ? 0 : UInt8(v))
        }
        guard labels.count == n else { throw DataError("\(path): y holds \(labels.count) labels for \(n) images") }
        // MATLAB's X(i, j, c, k) (i the row) sits at i + 32j + 1024c + 3072k; torchvision's image k is
        // [c][i][j] = X(i, j, c, k).
        var images = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in images.withUnsafeMutableBufferPointer { dst in
            for k in 0..<n { for c in 0..<3 { for i in 0..<size { for j in 0..<size {
                dst[((k * 3 + c) * size + i) * size + j] = src[i + size * j + size * size * c + 3 * size * size * k]
            } } } }
        } }
        return ImageSplit(images: images, labels: labels, channels: 3, height: size, width: size)
    }
}

/// One variable of a MAT file: its MATLAB class, dimensions (MATLAB's order) and values in column-major order.
struct MATVariable {
    enum Values {
        case bytes([UInt8])
        case doubles([Double])
        var count: Int { switch self { case .bytes(let b): return b.count; case .doubles(let d): return d.count } }
        var doubles: [Double] { switch self { case .bytes(let b): return b.map(Double.init); case .doubles(let d): return d } }
    }
    var name: String
    var matlabClass: String
    var dimensions: [Int]
    var values: Values
}

/// MAT level 5 (MATLAB 5.0 through 7.2): a 128-byte header, then tagged data elements; a variable is a
/// `miMATRIX` element, possibly inside a `miCOMPRESSED` (zlib) element. Little- and big-endian files.
enum MAT5 {
    static let miINT8: UInt32 = 1, miUINT8: UInt32 = 2, miINT16: UInt32 = 3, miUINT16: UInt32 = 4, miINT32: UInt32 = 5
    static let miUINT32: UInt32 = 6, miSINGLE: UInt32 = 7, miDOUBLE: UInt32 = 9, miINT64: UInt32 = 12, miUINT64: UInt32 = 13
    static let miMATRIX: UInt32 = 14, miCOMPRESSED: UInt32 = 15, miUTF8: UInt32 = 16
    static let classNames: [UInt8: String] = [1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double", 7: "single",
                                              8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32", 13: "uint32", 14: "int64", 15: "uint64"]
    /// The largest variable accepted: SVHN's extra set (531,131 images) is 1.6 GB; train is 225 MB.
    static let maximumVariableBytes = 1 << 31

    struct Reader {
        let bytes: ArraySlice<UInt8>
        let bigEndian: Bool
        let path: String

        func u32(_ at: Int) throws(DataError) -> UInt32 {
            guard at >= bytes.startIndex, at + 4 <= bytes.endIndex else { throw DataError("\(path): truncated (a data element runs past the end)") }
            let b = bytes[at..<(at + 4)].map(UInt32.init)
            return bigEndian ? b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3] : b[3] << 24 | b[2] << 16 | b[1] << 8 | b[0]
        }

        /// The element at `at`: its type, its data and where the next one starts.
        func element(at: Int) throws(DataError) -> (type: UInt32, data: ArraySlice<UInt8>, next: Int) {
            let first = try u32(at)
            if first >> 16 != 0 {  // small data element: type and size in one word, up to 4 data bytes
                let size = Int(first >> 16)
                guard size <= 4 else { throw DataError("\(path): malformed small data element (\(size) bytes)") }
                return (first & 0xffff, bytes[(at + 4)..<(at + 4 + size)], at + 8)
            }
            let size = Int(try u32(at + 4))
            guard at + 8 + size <= bytes.endIndex else { throw DataError("\(path): truncated (an element of \(size) bytes runs past the end)") }
            let padded = first == MAT5.miCOMPRESSED ? size : (size + 7) / 8 * 8
            return (first, bytes[(at + 8)..<(at + 8 + size)], min(at + 8 + padded, bytes.endIndex))
        }

        /// Numeric values of any MAT storage type, as Double, or as raw bytes for miUINT8.
        func values(type: UInt32, _ data: ArraySlice<UInt8>) throws(DataError) -> MATVariable.Values {
            if type == MAT5.miUINT8 { return .bytes(Array(data)) }
            let width: Int
            switch type {
            case MAT5.miINT8: width = 1
            case MAT5.miINT16, MAT5.miUINT16: width = 2
            case MAT5.miINT32, MAT5.miUINT32, MAT5.miSINGLE: width = 4
            case MAT5.miDOUBLE, MAT5.miINT64, MAT5.miUINT64: width = 8
            default: throw DataError("\(path): a numeric array of unsupported storage type \(type)")
            }
            guard data.count % width == 0 else { throw DataError("\(path): \(data.count) bytes do not divide into \(width)-byte values") }
            var out = [Double]()
            out.reserveCapacity(data.count / width)
            var i = data.startIndex
            while i < data.endIndex {
                var raw: UInt64 = 0
                for k in 0..<width { raw |= UInt64(data[i + (bigEndian ? width - 1 - k : k)]) << (8 * UInt64(k)) }
                switch type {
                case MAT5.miINT8: out.append(Double(Int8(truncatingIfNeeded: raw)))
                case MAT5.miINT16: out.append(Double(Int16(truncatingIfNeeded: raw)))
                case MAT5.miUINT16: out.append(Double(UInt16(truncatingIfNeeded: raw)))
                case MAT5.miINT32: out.append(Double(Int32(truncatingIfNeeded: raw)))
                case MAT5.miUINT32: out.append(Double(UInt32(truncatingIfNeeded: raw)))
                case MAT5.miSINGLE: out.append(Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw))))
                case MAT5.miDOUBLE: out.append(Double(bitPattern: raw))
                case MAT5.miINT64: out.append(Double(Int64(bitPattern: raw)))
                default: out.append(Double(raw))
                }
                i += width
            }
            return .doubles(out)
        }

        /// A miMATRIX element's content: flags, dimensions, name, real part.
        func matrix(_ data: ArraySlice<UInt8>) throws(DataError) -> MATVariable {
            let inner = Reader(bytes: data, bigEndian: bigEndian, path: path)
            let flags = try inner.element(at: data.startIndex)
            guard flags.type == MAT5.miUINT32, flags.data.count == 8 else { throw DataError("\(path): malformed array flags") }
            let flagWord = try inner.u32(flags.data.startIndex)
            let classID = UInt8(flagWord & 0xff)
            guard flagWord & 0x800 == 0 else { throw DataError("\(path): a complex array (SVHN's are real)") }
            let dims = try inner.element(at: flags.next)
            guard dims.type == MAT5.miINT32, dims.data.count >= 8, dims.data.count % 4 == 0 else { throw DataError("\(path): malformed dimensions") }
            var dimensions = [Int]()
            for at in stride(from: dims.data.startIndex, to: dims.data.endIndex, by: 4) { dimensions.append(Int(Int32(bitPattern: try inner.u32(at)))) }
            guard dimensions.allSatisfy({ $0 >= 0 }) else { throw DataError("\(path): negative dimensions \(dimensions)") }
            let count = dimensions.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            guard count <= MAT5.maximumVariableBytes else { throw DataError("\(path): an array of \(dimensions) is implausibly large") }
            let name = try inner.element(at: dims.next)
            guard name.type == MAT5.miINT8 || name.type == MAT5.miUTF8 else { throw DataError("\(path): malformed array name") }
            let className = MAT5.classNames[classID] ?? "unknown class \(classID)"
            guard (6...15).contains(classID) else {
                return MATVariable(name: String(decoding: name.data, as: UTF8.self), matlabClass: className, dimensions: dimensions, values: .bytes([]))
            }
            let real = try inner.element(at: name.next)
            return MATVariable(name: String(decoding: name.data, as: UTF8.self), matlabClass: className, dimensions: dimensions,
                               values: try inner.values(type: real.type, real.data))
        }
    }

    /// Every variable named X or y; the others are skipped unread.
    static func read(_ bytes: [UInt8], path: String) throws(DataError) -> (x: MATVariable, y: MATVariable) {
        let endian = String(decoding: bytes[126..<128], as: UTF8.self)
        guard endian == "IM" || endian == "MI" else { throw DataError("\(path): MAT header has no endian indicator") }
        let file = Reader(bytes: bytes[...], bigEndian: endian == "MI", path: path)
        var found = [String: MATVariable]()
        var at = 128
        while at < bytes.count {
            let element = try file.element(at: at)
            var matrixData = element.data, type = element.type
            if type == miCOMPRESSED {
                let inflated: [UInt8]
                do { inflated = try Zlib.inflate(element.data, limit: maximumVariableBytes + 4096) }
                catch { throw DataError("\(path): a compressed variable: \(error.description)") }
                let inner = Reader(bytes: inflated[...], bigEndian: file.bigEndian, path: path)
                let e = try inner.element(at: 0)
                (type, matrixData) = (e.type, e.data)
            }
            if type == miMATRIX {
                let variable = try file.matrix(matrixData)
                if variable.name == "X" || variable.name == "y" { found[variable.name] = variable }
            }
            at = element.next
        }
        guard let x = found["X"], let y = found["y"] else {
            throw DataError("\(path): no variable \(found["X"] == nil ? "X" : "y") (SVHN files hold X and y)")
        }
        return (x, y)
    }
}

/// MAT 7.3: an HDF5 file (behind a 512-byte MATLAB header) whose datasets are the variables, stored with
/// their dimensions reversed (HDF5 is row-major), each with a `MATLAB_class` attribute.
enum MAT73 {
    static func read(_ path: String) throws(DataError) -> (x: MATVariable, y: MATVariable) {
        do {
            let reader = try HDF5Reader(opening: path)
            let members = try reader.children(of: "/", expected: 16)
            func variable(_ name: String) throws -> MATVariable {
                guard members.contains(where: { $0.name == name && $0.kind == .dataset }) else {
                    throw DataError("\(path): no variable \(name) (SVHN files hold X and y)")
                }
                let attributes = try reader.attributes(on: "/" + name, limit: 64, maximumStringBytes: 256)
                guard case .string(let matlabClass)? = attributes.first(where: { $0.name == "MATLAB_class" })?.value else {
                    throw DataError("\(path): \(name) has no MATLAB_class attribute")
                }
                let dimensions = Array(try reader.shape(of: "/" + name).reversed())
                guard dimensions.reduce(1, *) <= MAT5.maximumVariableBytes else { throw DataError("\(path): \(name) is implausibly large") }
                let values: MATVariable.Values
                switch try reader.elementType(of: "/" + name).kind {
                case .uint8: values = .bytes(try reader.read("/" + name, as: UInt8.self))
                case .float64: values = .doubles(try reader.read("/" + name, as: Double.self))
                case .float32: values = .doubles(try reader.read("/" + name, as: Float.self).map(Double.init))
                case .int32: values = .doubles(try reader.read("/" + name, as: Int32.self).map(Double.init))
                case .int64: values = .doubles(try reader.read("/" + name, as: Int64.self).map(Double.init))
                case nil: throw DataError("\(path): \(name) has an element type SVHN does not use")
                }
                // Row-major data of the reversed dimensions is exactly MATLAB's column-major order.
                return MATVariable(name: name, matlabClass: matlabClass, dimensions: dimensions, values: values)
            }
            return (try variable("X"), try variable("y"))
        } catch let error as DataError {
            throw error
        } catch let error as StorageError {
            throw DataError("\(path): \(error.problem)")
        } catch {
            throw DataError("\(path): \(error)")
        }
    }
}
