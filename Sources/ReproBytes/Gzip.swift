import CZlib

/// gzip through zlib (which libhdf5 itself links).
public enum Gzip {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Decompresses one gzip member. `expectedSize` is the caller's bound on the output (from the trailer's
    /// ISIZE): the output never grows past it, so a damaged or hostile file cannot ask for unbounded memory.
    public static func decompress(_ compressed: [UInt8], expectedSize: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        // 16 + MAX_WBITS: a gzip header and trailer (CRC-32 and size are checked by zlib).
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib cannot start inflating")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: expectedSize + 1)  // one spare byte detects too much output
        var status: Int32 = Z_OK
        compressed.withUnsafeBufferPointer { input in output.withUnsafeMutableBufferPointer { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            stream.next_out = out.baseAddress
            stream.avail_out = UInt32(out.count)
            status = inflate(&stream, Z_FINISH)
        } }
        let produced = Int(stream.total_out)
        switch status {
        case Z_STREAM_END:
            guard produced == expectedSize else {
                throw Failure(description: "decompressed to \(produced) bytes, but the gzip trailer says \(expectedSize)")
            }
            guard stream.avail_in == 0 else { throw Failure(description: "\(stream.avail_in) bytes of trailing data after the gzip stream") }
            output.removeLast()
            return output
        case Z_BUF_ERROR where produced > expectedSize:
            throw Failure(description: "decompresses to more than the \(expectedSize) bytes the gzip trailer says")
        case Z_BUF_ERROR:
            throw Failure(description: "truncated gzip data (the stream ends early)")
        default:
            let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
            throw Failure(description: "damaged gzip data (\(message))")
        }
    }

    /// Compresses `bytes` as one gzip member (level 6, no file name or time: the same bytes every time).
    public static func compress(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        precondition(deflateInit2_(&stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                                   Int32(MemoryLayout<z_stream>.size)) == Z_OK, "zlib cannot start deflating")
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))) + 32)
        bytes.withUnsafeBufferPointer { input in output.withUnsafeMutableBufferPointer { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            stream.next_out = out.baseAddress
            stream.avail_out = UInt32(out.count)
            precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END, "deflate did not finish in its bound")
        } }
        return Array(output.prefix(Int(stream.total_out)))
    }
}

/// zlib streams (RFC 1950), as MATLAB's compressed variables hold them.
public enum Zlib {
    /// Inflates one zlib stream whose output size is not known in advance, refusing more than `limit` bytes
    /// (a damaged or hostile stream cannot ask for unbounded memory). Returns the output and how many input
    /// bytes the stream used.
    public static func inflate(_ compressed: ArraySlice<UInt8>, limit: Int) throws(Gzip.Failure) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Gzip.Failure(description: "zlib cannot start inflating")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        let input = Array(compressed)
        var consumed = 0
        while status == Z_OK {
            let produced: Int = input.withUnsafeBufferPointer { inp in chunk.withUnsafeMutableBufferPointer { out in
                stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress! + consumed)
                stream.avail_in = UInt32(inp.count - consumed)
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                status = zlib_inflate(&stream)
                consumed = inp.count - Int(stream.avail_in)
                return out.count - Int(stream.avail_out)
            } }
            output.append(contentsOf: chunk.prefix(produced))
            guard output.count <= limit else { throw Gzip.Failure(description: "decompresses to more than \(limit) bytes") }
            if status == Z_BUF_ERROR || (status == Z_OK && produced == 0 && stream.avail_in == 0) {
                throw Gzip.Failure(description: "truncated compressed data (the zlib stream ends early)")
            }
        }
        guard status == Z_STREAM_END else {
            throw Gzip.Failure(description: "damaged compressed data (\(stream.msg.map { String(cString: $0) } ?? "error \(status)"))")
        }
        return output
    }
}

/// zlib's inflate, named apart from `Zlib.inflate`.
@inline(__always)
func zlib_inflate(_ stream: UnsafeMutablePointer<z_stream>) -> Int32 { CZlib.inflate(stream, Z_NO_FLUSH) }
