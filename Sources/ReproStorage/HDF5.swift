import CHDF5
import Foundation

/// A failure of the storage layer, naming the file and what went wrong.
public struct StorageError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) { self.path = path; self.problem = problem }
    public var description: String { "\(path): \(problem)" }
}

/// Element types a record stores, with their little-endian file types and native memory types.
public protocol HDF5Element {
    static var fileType: hid_t { get }
    static var memoryType: hid_t { get }
}
extension Float: HDF5Element {
    public static var fileType: hid_t { HDF5.ready(); return H5T_IEEE_F32LE_g }
    public static var memoryType: hid_t { HDF5.ready(); return H5T_NATIVE_FLOAT_g }
}
extension Double: HDF5Element {
    public static var fileType: hid_t { HDF5.ready(); return H5T_IEEE_F64LE_g }
    public static var memoryType: hid_t { HDF5.ready(); return H5T_NATIVE_DOUBLE_g }
}
extension Int32: HDF5Element {
    public static var fileType: hid_t { HDF5.ready(); return H5T_STD_I32LE_g }
    public static var memoryType: hid_t { HDF5.ready(); return H5T_NATIVE_INT_g }
}
extension Int64: HDF5Element {
    public static var fileType: hid_t { HDF5.ready(); return H5T_STD_I64LE_g }
    public static var memoryType: hid_t { HDF5.ready(); return H5T_NATIVE_LLONG_g }
}
extension UInt8: HDF5Element {
    public static var fileType: hid_t { HDF5.ready(); return H5T_STD_U8LE_g }
    public static var memoryType: hid_t { HDF5.ready(); return H5T_NATIVE_UCHAR_g }
}

public enum HDF5 {
    private static let initialized: Bool = {
        // No cleanup at exit: after a failed write (a full disk) libhdf5's own atexit close of that file
        // crashed the process. Every file repro writes is closed explicitly, so nothing is lost.
        H5dont_atexit()
        H5open()
        H5Eset_auto2(0, nil, nil)  // errors are reported through StorageError, not printed by libhdf5
        return true
    }()
    /// Initializes libhdf5 once (its type ids are globals set by H5open) and silences its own error printing.
    public static func ready() { _ = initialized }

    /// "1.10.8", the library this binary runs against.
    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }
}

/// A file being written. Every rule that makes records safe to read and byte-reproducible lives here:
/// 1.10 format bounds (checksummed metadata), a user block reserved for the whole-file checksum,
/// fixed-length strings only, no object timestamps, and fletcher32 (+ shuffle + deflate) on every dataset.
public final class HDF5Writer {
    public let path: String
    let file: hid_t
    let objectProperties: hid_t   // groups: no time tracking
    public static let userBlockSize = 512

    public init(creating path: String) throws {
        HDF5.ready()
        signal(SIGXFSZ, SIG_IGN)  // past the file size limit a write fails (EFBIG) instead of killing the process
        self.path = path
        let fcpl = H5Pcreate(H5P_CLS_FILE_CREATE_ID_g), fapl = H5Pcreate(H5P_CLS_FILE_ACCESS_ID_g)
        defer { H5Pclose(fcpl); H5Pclose(fapl) }
        H5Pset_userblock(fcpl, hsize_t(Self.userBlockSize))
        H5Pset_obj_track_times(fcpl, false)  // the root group, created with the file
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110)
        file = H5Fcreate(path, 0x0002 /* H5F_ACC_TRUNC */, fcpl, fapl)
        guard file >= 0 else { throw StorageError(path: path, problem: "cannot create the HDF5 file") }
        objectProperties = H5Pcreate(H5P_CLS_GROUP_CREATE_ID_g)
        H5Pset_obj_track_times(objectProperties, false)
    }

    /// Opens a closed file this writer made, to add objects to it (`RecordFile.commit(amending:)`).
    public init(appendingTo path: String) throws {
        HDF5.ready()
        signal(SIGXFSZ, SIG_IGN)
        self.path = path
        let fapl = H5Pcreate(H5P_CLS_FILE_ACCESS_ID_g)
        defer { H5Pclose(fapl) }
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110)
        file = H5Fopen(path, 0x0001 /* H5F_ACC_RDWR */, fapl)
        guard file >= 0 else { throw StorageError(path: path, problem: "cannot reopen the HDF5 file to add to it") }
        objectProperties = H5Pcreate(H5P_CLS_GROUP_CREATE_ID_g)
        H5Pset_obj_track_times(objectProperties, false)
    }

    /// Closes the file; call once, before the caller renames or checksums it.
    public func close() throws {
        H5Pclose(objectProperties)
        errno = 0
        guard H5Fclose(file) >= 0 else {
            let reason = errno == 0 ? "the disk may be full" : String(cString: strerror(errno))
            throw StorageError(path: path, problem: "writing the record failed (\(reason))")
        }
    }

    /// Creates every missing group along `groupPath` ("/a/b/c").
    @discardableResult
    public func ensureGroup(_ groupPath: String) throws -> String {
        var current = ""
        for part in groupPath.split(separator: "/") {
            current += "/" + part
            if H5Lexists(file, current, 0) > 0 { continue }
            let g = H5Gcreate2(file, current, 0, objectProperties, 0)
            guard g >= 0 else { throw StorageError(path: path, problem: "cannot create group \(current)") }
            H5Gclose(g)
        }
        return groupPath
    }

    private func parent(of objectPath: String) -> String {
        guard let slash = objectPath.lastIndex(of: "/"), slash != objectPath.startIndex else { return "/" }
        return String(objectPath[..<slash])
    }

    /// Writes a chunked dataset with fletcher32, shuffle and deflate. `shape` must multiply to values.count.
    public func write<T: HDF5Element>(_ values: [T], shape: [Int], at objectPath: String) throws {
        precondition(shape.reduce(1, *) == values.count, "\(objectPath): shape \(shape) ≠ \(values.count) values")
        try create(T.self, shape: shape, at: objectPath)
        try writeRows(values, from: 0, at: objectPath)
    }

    /// Creates a chunked dataset (fletcher32, shuffle, deflate) to be filled by `writeRows`.
    public func create<T: HDF5Element>(_: T.Type, shape: [Int], at objectPath: String) throws {
        try ensureGroup(parent(of: objectPath))
        let dims = shape.map { hsize_t(max($0, 0)) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(H5P_CLS_DATASET_CREATE_ID_g)
        defer { H5Pclose(dcpl) }
        H5Pset_obj_track_times(dcpl, false)
        // Chunks of about 64 KiB along the first axis: big enough to compress, small enough to read a slice.
        let rowElements = max(shape.dropFirst().reduce(1, *), 1)
        let rowsPerChunk = max(1, min(max(shape.first ?? 1, 1), 16384 / rowElements))
        var chunk = dims.map { max($0, 1) }
        if !chunk.isEmpty { chunk[0] = hsize_t(rowsPerChunk) }
        H5Pset_chunk(dcpl, Int32(chunk.count), chunk)
        H5Pset_fletcher32(dcpl)
        H5Pset_shuffle(dcpl)
        H5Pset_deflate(dcpl, 6)
        let dataset = H5Dcreate2(file, objectPath, T.fileType, space, 0, dcpl, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "cannot create dataset \(objectPath)") }
        H5Dclose(dataset)
    }

    /// `create` for a dataset whose element type is chosen at run time.
    public func create(_ kind: HDF5Reader.ElementKind, shape: [Int], at objectPath: String) throws {
        switch kind {
        case .float32: try create(Float.self, shape: shape, at: objectPath)
        case .float64: try create(Double.self, shape: shape, at: objectPath)
        case .int32: try create(Int32.self, shape: shape, at: objectPath)
        case .int64: try create(Int64.self, shape: shape, at: objectPath)
        case .uint8: try create(UInt8.self, shape: shape, at: objectPath)
        }
    }

    /// `writeRows` of values held as Double, each converted to `kind` (exactly, for values of that type).
    public func writeRows(_ values: [Double], as kind: HDF5Reader.ElementKind, from first: Int, at objectPath: String) throws {
        switch kind {
        case .float32: try writeRows(values.map { Float($0) }, from: first, at: objectPath)
        case .float64: try writeRows(values, from: first, at: objectPath)
        case .int32: try writeRows(values.map { Int32($0) }, from: first, at: objectPath)
        case .int64: try writeRows(values.map { Int64($0) }, from: first, at: objectPath)
        case .uint8: try writeRows(values.map { UInt8($0) }, from: first, at: objectPath)
        }
    }

    /// Writes whole rows (first-axis slices) starting at row `first`; `values` holds a whole number of rows.
    public func writeRows<T: HDF5Element>(_ values: [T], from first: Int, at objectPath: String) throws {
        if values.isEmpty { return }
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let fileSpace = H5Dget_space(dataset)
        defer { H5Sclose(fileSpace) }
        let rank = Int(H5Sget_simple_extent_ndims(fileSpace))
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(fileSpace, &dims, nil)
        let rowElements = dims.dropFirst().reduce(1) { $0 * Int($1) }
        precondition(rank >= 1 && values.count % max(rowElements, 1) == 0 && first + values.count / max(rowElements, 1) <= Int(dims[0]),
                     "\(objectPath): rows do not fit")
        var start = [hsize_t](repeating: 0, count: rank), count = dims
        start[0] = hsize_t(first)
        count[0] = hsize_t(values.count / max(rowElements, 1))
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, count, nil)
        let memorySpace = H5Screate_simple(Int32(rank), count, nil)
        defer { H5Sclose(memorySpace) }
        let status = values.withUnsafeBytes { H5Dwrite(dataset, T.memoryType, memorySpace, fileSpace, 0, $0.baseAddress) }
        guard status >= 0 else { throw StorageError(path: path, problem: "cannot write dataset \(objectPath)") }
    }

    /// A fixed-length, NUL-terminated ASCII/UTF-8 string attribute on a group (created if missing).
    public func setAttribute(_ name: String, _ value: String, on objectPath: String = "/") throws {
        try ensureGroup(objectPath)
        let bytes = Array(value.utf8)
        let type = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(type) }
        H5Tset_size(type, max(bytes.count, 1))
        H5Tset_strpad(type, H5T_STR_NULLPAD)
        try writeAttribute(name, type: type, memoryType: type, on: objectPath, bytes: bytes.isEmpty ? [0] : bytes)
    }

    public func setAttribute<T: HDF5Element>(_ name: String, _ value: T, on objectPath: String = "/") throws {
        try ensureGroup(objectPath)
        let bytes = withUnsafeBytes(of: value) { Array($0) }
        try writeAttribute(name, type: T.fileType, memoryType: T.memoryType, on: objectPath, bytes: bytes)
    }

    public func setAttribute(_ name: String, _ value: Bool, on objectPath: String = "/") throws {
        try setAttribute(name, Int32(value ? 1 : 0), on: objectPath)
    }

    public func setAttribute(_ name: String, _ value: AttributeValue, on objectPath: String = "/") throws {
        switch value {
        case .int32(let v): try setAttribute(name, v, on: objectPath)
        case .int64(let v): try setAttribute(name, v, on: objectPath)
        case .float64(let v): try setAttribute(name, v, on: objectPath)
        case .string(let v): try setAttribute(name, v, on: objectPath)
        case .other(let what): throw StorageError(path: path, problem: "cannot write \(what) as \(objectPath)@\(name)")
        }
    }

    private func writeAttribute(_ name: String, type: hid_t, memoryType: hid_t, on objectPath: String, bytes: [UInt8]) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        if H5Aexists_by_name(file, objectPath, name, 0) > 0 { H5Adelete_by_name(file, objectPath, name, 0) }
        let attribute = H5Acreate_by_name(file, objectPath, name, type, space, 0, 0, 0)
        guard attribute >= 0 else { throw StorageError(path: path, problem: "cannot create attribute \(objectPath)@\(name)") }
        defer { H5Aclose(attribute) }
        let status = bytes.withUnsafeBytes { H5Awrite(attribute, memoryType, $0.baseAddress) }
        guard status >= 0 else { throw StorageError(path: path, problem: "cannot write attribute \(objectPath)@\(name)") }
    }
}

/// Read access to a record: datasets and attributes by path, with shapes checked before allocation.
public final class HDF5Reader {
    public let path: String
    let file: hid_t

    public init(opening path: String) throws {
        HDF5.ready()
        self.path = path
        guard H5Fis_hdf5(path) > 0 else { throw StorageError(path: path, problem: "not an HDF5 file") }
        file = H5Fopen(path, 0x0000 /* H5F_ACC_RDONLY */, 0)
        guard file >= 0 else { throw StorageError(path: path, problem: "libhdf5 cannot open the file") }
    }

    deinit { H5Fclose(file) }

    /// The element types records use, each exactly one HDF5 file type (little-endian, signed integers).
    public enum ElementKind: String, Sendable, CaseIterable {
        case float32, float64, int32, int64, uint8
        var fileType: hid_t {
            switch self {
            case .float32: return Float.fileType
            case .float64: return Double.fileType
            case .int32: return Int32.fileType
            case .int64: return Int64.fileType
            case .uint8: return UInt8.fileType
            }
        }
        public var isInteger: Bool { self != .float32 && self != .float64 }
    }

    /// What a link in a group points to.
    public enum ObjectKind: Equatable, Sendable, CustomStringConvertible {
        case group, dataset
        /// A soft or external link, a named datatype or anything else records never contain.
        case other(String)
        public var description: String {
            switch self {
            case .group: return "a group"
            case .dataset: return "a dataset"
            case .other(let what): return what
            }
        }
    }

    /// The members of a group in name order with their kinds. A group with more than `expected` + 64 members
    /// is refused before any name is read (a hostile file cannot make this loop long); a few extra members
    /// are listed, so the caller can name the first unexpected one.
    public func children(of groupPath: String, expected: Int) throws -> [(name: String, kind: ObjectKind)] {
        let limit = expected + 64
        let group = H5Gopen2(file, groupPath, 0)
        guard group >= 0 else { throw StorageError(path: path, problem: "\(groupPath): cannot open the group") }
        defer { H5Gclose(group) }
        var info = H5G_info_t()
        guard H5Gget_info(group, &info) >= 0 else { throw StorageError(path: path, problem: "\(groupPath): cannot read the group") }
        guard info.nlinks <= UInt64(limit) else {
            throw StorageError(path: path, problem: "\(groupPath) has \(info.nlinks) members, the schema expects \(expected)")
        }
        var out = [(String, ObjectKind)]()
        for i in 0..<info.nlinks {
            let size = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard size > 0, size < 4096 else { throw StorageError(path: path, problem: "\(groupPath): unreadable member name") }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, 0)
            let name = String(cString: buffer)
            var link = H5L_info_t()
            guard H5Lget_info(group, name, &link, 0) >= 0 else { throw StorageError(path: path, problem: "\(groupPath)/\(name): unreadable link") }
            guard link.type == H5L_TYPE_HARD else { out.append((name, .other("a soft or external link"))); continue }
            var object = H5O_info_t()
            guard H5Oget_info_by_name2(group, name, &object, UInt32(H5O_INFO_BASIC), 0) >= 0 else {
                throw StorageError(path: path, problem: "\(groupPath)/\(name): cannot inspect the object")
            }
            switch object.type {
            case H5O_TYPE_GROUP: out.append((name, .group))
            case H5O_TYPE_DATASET: out.append((name, .dataset))
            default: out.append((name, .other("a named datatype")))
            }
        }
        return out
    }

    /// The stored element type of a dataset: one of the kinds records use, or nil with a description.
    public func elementType(of objectPath: String) throws -> (kind: ElementKind?, description: String) {
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        return Self.describe(type)
    }

    static func describe(_ type: hid_t) -> (kind: ElementKind?, description: String) {
        if let kind = ElementKind.allCases.first(where: { H5Tequal(type, $0.fileType) > 0 }) { return (kind, kind.rawValue) }
        let size = H5Tget_size(type)
        let order = H5Tget_order(type) == H5T_ORDER_BE ? " big-endian" : ""
        switch H5Tget_class(type) {
        case H5T_INTEGER: return (nil, "\(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int")\(8 * size)\(order)")
        case H5T_FLOAT: return (nil, "float\(8 * size)\(order)")
        case H5T_STRING: return (nil, H5Tis_variable_str(type) > 0 ? "a variable-length string" : "a string")
        default: return (nil, "a compound or other non-numeric type")
        }
    }

    /// The number of attributes on an object (records put none on datasets).
    public func attributeCount(on objectPath: String) throws -> Int {
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(file, objectPath, &info, UInt32(H5O_INFO_NUM_ATTRS), 0) >= 0 else {
            throw StorageError(path: path, problem: "missing object \(objectPath)")
        }
        return Int(info.num_attrs)
    }

    public func shape(of objectPath: String) throws -> [Int] {
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        guard H5Sget_simple_extent_type(space) == H5S_SIMPLE else { throw StorageError(path: path, problem: "\(objectPath) is a scalar or empty dataspace") }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 1, rank <= 8 else { throw StorageError(path: path, problem: "\(objectPath) has rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        guard dims.allSatisfy({ $0 < 1 << 40 }) else { throw StorageError(path: path, problem: "\(objectPath) has an implausible shape") }
        return dims.map { Int($0) }
    }

    /// Reads a whole dataset whose element type and shape the caller has already checked against the schema.
    public func read<T: HDF5Element & Numeric>(_ objectPath: String, as type: T.Type = T.self) throws -> [T] {
        let shape = try shape(of: objectPath)
        guard shape.reduce(1, *) <= 1 << 31 else { throw StorageError(path: path, problem: "\(objectPath) is implausibly large") }
        return try read(objectPath, rows: 0..<shape[0], as: type)
    }

    /// Reads rows `rows` (first-axis slices) of a dataset whose element type and shape the caller has checked.
    public func read<T: HDF5Element & Numeric>(_ objectPath: String, rows: Range<Int>, as _: T.Type = T.self) throws -> [T] {
        let shape = try shape(of: objectPath)
        guard let first = shape.first, rows.lowerBound >= 0, rows.upperBound <= first else {
            throw StorageError(path: path, problem: "\(objectPath): rows \(rows) outside its shape \(shape)")
        }
        let rowElements = shape.dropFirst().reduce(1, *)
        var values = [T](repeating: 0, count: rows.count * rowElements)
        if values.isEmpty { return values }
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let fileSpace = H5Dget_space(dataset)
        defer { H5Sclose(fileSpace) }
        var start = [hsize_t](repeating: 0, count: shape.count), count = shape.map { hsize_t($0) }
        start[0] = hsize_t(rows.lowerBound)
        count[0] = hsize_t(rows.count)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, count, nil)
        let memorySpace = H5Screate_simple(Int32(count.count), count, nil)
        defer { H5Sclose(memorySpace) }
        let status = values.withUnsafeMutableBytes { H5Dread(dataset, T.memoryType, memorySpace, fileSpace, 0, $0.baseAddress) }
        guard status >= 0 else { throw StorageError(path: path, problem: "cannot read \(objectPath) (damaged data or checksum mismatch)") }
        return values
    }

    /// Every attribute of an object, in name order, as the values records use (anything else is `.other`).
    /// Strings longer than `maximumStringBytes` are refused before they are read.
    public func attributes(on objectPath: String, limit: Int, maximumStringBytes: Int) throws -> [(name: String, value: AttributeValue)] {
        let count = try attributeCount(on: objectPath)
        guard count <= limit else {
            throw StorageError(path: path, problem: "\(objectPath) has \(count) attributes, the schema allows at most \(limit)")
        }
        var out = [(String, AttributeValue)]()
        for i in 0..<count {
            let size = H5Aget_name_by_idx(file, objectPath, H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, 0)
            guard size > 0, size < 4096 else { throw StorageError(path: path, problem: "\(objectPath): unreadable attribute name") }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            H5Aget_name_by_idx(file, objectPath, H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buffer, Int(size) + 1, 0)
            let name = String(cString: buffer)
            out.append((name, try attribute(name, on: objectPath, maximumStringBytes: maximumStringBytes)))
        }
        return out
    }

    func attribute(_ name: String, on objectPath: String, maximumStringBytes: Int) throws -> AttributeValue {
        let attribute = H5Aopen_by_name(file, objectPath, name, 0, 0)
        guard attribute >= 0 else { throw StorageError(path: path, problem: "missing attribute \(objectPath)@\(name)") }
        defer { H5Aclose(attribute) }
        let space = H5Aget_space(attribute)
        defer { H5Sclose(space) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        let (kind, description) = Self.describe(type)
        guard H5Sget_simple_extent_type(space) == H5S_SCALAR else {
            return .other("an array of \(kind?.rawValue ?? description)")
        }
        func scalar<T: HDF5Element & Numeric>(_: T.Type) throws -> T {
            var value: T = 0
            guard withUnsafeMutableBytes(of: &value, { H5Aread(attribute, T.memoryType, $0.baseAddress) }) >= 0 else {
                throw StorageError(path: path, problem: "cannot read \(objectPath)@\(name)")
            }
            return value
        }
        switch kind {
        case .int32: return .int32(try scalar(Int32.self))
        case .int64: return .int64(try scalar(Int64.self))
        case .float64: return .float64(try scalar(Double.self))
        case .float32, .uint8: return .other(description)
        case nil:
            guard H5Tget_class(type) == H5T_STRING, H5Tis_variable_str(type) == 0 else { return .other(description) }
            let size = H5Tget_size(type)
            guard size >= 1, size <= maximumStringBytes else { return .other("a string of \(size) bytes") }
            var bytes = [UInt8](repeating: 0, count: size)
            guard H5Aread(attribute, type, &bytes) >= 0 else { throw StorageError(path: path, problem: "cannot read \(objectPath)@\(name)") }
            let text = bytes.prefix { $0 != 0 }
            guard bytes.dropFirst(text.count).allSatisfy({ $0 == 0 }), let string = String(validating: text, as: UTF8.self) else {
                return .other("a string that is not NUL-padded UTF-8")
            }
            return .string(string)
        }
    }
}

/// An attribute as records store it: scalar int32 (booleans too), int64, float64 or a fixed-length string.
public enum AttributeValue: Equatable, Sendable, CustomStringConvertible {
    case int32(Int32), int64(Int64), float64(Double), string(String)
    /// Anything else that was found, described ("float32", "an array of int64", …).
    case other(String)

    public var description: String {
        switch self {
        case .int32(let v): return "int32 \(v)"
        case .int64(let v): return "int64 \(v)"
        case .float64(let v): return "float64 \(v)"
        case .string(let v): return "string '\(v.count > 40 ? String(v.prefix(40)) + "…" : v)'"
        case .other(let what): return what
        }
    }
}
