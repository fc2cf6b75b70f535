import Foundation

/// TensorBoard's event file: TFRecord framing around `Event` protocol buffers (tensorflow/core/util/
/// event.proto: wall_time = 1 double, step = 2 int64, file_version = 3 string, summary = 5 Summary;
/// summary.proto: Summary.value = 1 repeated Value; Value.tag = 1 string, simple_value = 2 float).
/// Each record is: length (uint64 LE), masked CRC-32C of the length, the payload, masked CRC-32C of the payload.
public struct EventFile {
    public private(set) var bytes: [UInt8] = []
    let wallTime: Double

    /// Starts a file with the version event every reader expects first.
    public init(wallTime: Double) {
        self.wallTime = wallTime
        var event = Protobuf()
        event.double(1, wallTime)
        event.string(3, "brain.Event:2")
        append(event.bytes)
    }

    /// One scalar: an Event at `step` with one Summary.Value.
    public mutating func scalar(_ tag: String, _ value: Float, step: Int) {
        var v = Protobuf()
        v.string(1, tag)
        v.float(2, value)
        var summary = Protobuf()
        summary.message(1, v.bytes)
        var event = Protobuf()
        event.double(1, wallTime)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary.bytes)
        append(event.bytes)
    }

    mutating func append(_ payload: [UInt8]) {
        let length = withUnsafeBytes(of: UInt64(payload.count).littleEndian) { Array($0) }
        bytes += length
        bytes += withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { Array($0) }
        bytes += payload
        bytes += withUnsafeBytes(of: CRC32C.masked(payload).littleEndian) { Array($0) }
    }
}

/// The few protocol-buffer encodings an Event needs (wire types 0 varint, 1 fixed64, 2 length-delimited,
/// 5 fixed32).
struct Protobuf {
    var bytes: [UInt8] = []

    mutating func key(_ field: Int, _ wireType: Int) { rawVarint(UInt64(field << 3 | wireType)) }
    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); rawVarint(value) }
    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }
    mutating func message(_ field: Int, _ payload: [UInt8]) { key(field, 2); rawVarint(UInt64(payload.count)); bytes += payload }
    mutating func string(_ field: Int, _ text: String) { message(field, Array(text.utf8)) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord frames use it, and its mask.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data { crc = table[Int((crc ^ UInt32(b)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked form: rotate right by 15, add 0xa282ead8.
    static func masked(_ data: [UInt8]) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
