import Foundation
import ReproData

/// Writes MAT level 5 files (uncompressed, little-endian) with numeric variables: to make SVHN-shaped data
/// of any size, and deliberately wrong ones (other names, dimensions, classes, labels). The reader's own
/// correctness is tested against SciPy- and hdf5storage-written fixtures instead.
public enum MATWriter {
    public enum Values {
        case uint8([UInt8])
        case double([Double])
    }

    /// One variable: its name, MATLAB dimensions and values in column-major order.
    public struct Variable {
        public let name: String
        public let dimensions: [Int]
        public let values: Values
        public init(name: String, dimensions: [Int], values: Values) {
            self.name = name
            self.dimensions = dimensions
            self.values = values
        }
    }

    public static func file(_ variables: [Variable]) -> [UInt8] {
        var header = Array("MATLAB 5.0 MAT-file, written by repro's tests".utf8)
        header += [UInt8](repeating: 0x20, count: 116 - header.count)
        header += [UInt8](repeating: 0, count: 8) + [0x00, 0x01] + Array("IM".utf8)
        return header + variables.flatMap(matrix)
    }

    static func element(_ type: UInt32, _ data: [UInt8]) -> [UInt8] {
        le(type) + le(UInt32(data.count)) + data + [UInt8](repeating: 0, count: (8 - data.count % 8) % 8)
    }

    static func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    static func matrix(_ v: Variable) -> [UInt8] {
        let (classID, storage, data): (UInt32, UInt32, [UInt8])
        switch v.values {
        case .uint8(let b): (classID, storage, data) = (9, 2, b)
        case .double(let d): (classID, storage, data) = (6, 9, d.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } })
        }
        let body = element(6, le(classID) + le(0)) + element(5, v.dimensions.flatMap { le(UInt32(bitPattern: Int32($0))) })
            + element(1, Array(v.name.utf8)) + element(storage, data)
        return element(14, body)
    }

    /// SVHN's X and y for a split given in torchvision's order (labels 0…9 stored as 10 for digit 0).
    public static func svhn(_ split: ImageSplit, names: (x: String, y: String) = ("X", "y")) -> [UInt8] {
        let n = split.count, size = 32
        var x = [UInt8](repeating: 0, count: n * 3 * size * size)
        for k in 0..<n { for c in 0..<3 { for i in 0..<size { for j in 0..<size {
            x[i + size * j + size * size * c + 3 * size * size * k] = split.images[((k * 3 + c) * size + i) * size + j]
        } } } }
        return file([Variable(name: names.x, dimensions: [size, size, 3, n], values: .uint8(x)),
                     Variable(name: names.y, dimensions: [n, 1], values: .uint8(split.labels.map { $0 == 0 ? 10 : $0 }))])
    }

    /// Seeded random SVHN-shaped images and labels.
    public static func syntheticSVHN(count: Int, seed: UInt64) -> ImageSplit {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
        return ImageSplit(images: (0..<(count * 3 * 1024)).map { _ in UInt8(truncatingIfNeeded: next()) },
                          labels: (0..<count).map { _ in UInt8(next() % 10) }, channels: 3, height: 32, width: 32)
    }
}
