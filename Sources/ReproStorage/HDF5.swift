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
        H5open()
        H5Eset_auto2(0, nil, nil)  // errors are reported through StorageError, not printed by libhdf5
        return true
    }()
    static func ready() { _ = initialized }

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

    /// Opens an existing file for changes (tests that build damaged or foreign records use this).
    public init(modifying path: String) throws {
        HDF5.ready()
        self.path = path
        file = H5Fopen(path, 0x0001 /* H5F_ACC_RDWR */, 0)
        guard file >= 0 else { throw StorageError(path: path, problem: "cannot open the HDF5 file for writing") }
        objectProperties = H5Pcreate(H5P_CLS_GROUP_CREATE_ID_g)
        H5Pset_obj_track_times(objectProperties, false)
    }

    /// Replaces the values of an existing dataset (same element count).
    public func overwrite<T: HDF5Element>(_ values: [T], at objectPath: String) throws {
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let status = values.withUnsafeBytes { H5Dwrite(dataset, T.memoryType, 0, 0, 0, $0.baseAddress) }
        guard status >= 0 else { throw StorageError(path: path, problem: "cannot write dataset \(objectPath)") }
    }

    /// Closes the file; call once, before the caller renames or checksums it.
    public func close() throws {
        H5Pclose(objectProperties)
        guard H5Fclose(file) >= 0 else { throw StorageError(path: path, problem: "closing the HDF5 file failed") }
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

    public func exists(_ objectPath: String) -> Bool {
        var current = ""
        for part in objectPath.split(separator: "/") {
            current += "/" + part
            if H5Lexists(file, current, 0) <= 0 { return false }
        }
        return true
    }

    /// Names of the members of a group, in name order (HDF5's default index).
    public func members(of groupPath: String) throws -> [String] {
        let group = H5Gopen2(file, groupPath, 0)
        guard group >= 0 else { throw StorageError(path: path, problem: "missing group \(groupPath)") }
        defer { H5Gclose(group) }
        var info = H5G_info_t()
        H5Gget_info(group, &info)
        var names = [String]()
        for i in 0..<info.nlinks {
            let size = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard size >= 0 else { continue }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, 0)
            names.append(String(cString: buffer))
        }
        return names
    }

    public enum ElementKind: String, Sendable { case float32, float64, int32, int64, uint8 }

    /// The stored element type of a dataset, for the types records use.
    public func elementKind(of objectPath: String) throws -> ElementKind {
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let type = H5Dget_type(dataset)
        defer { H5Tclose(type) }
        let size = H5Tget_size(type)
        switch (H5Tget_class(type), size) {
        case (H5T_FLOAT, 4): return .float32
        case (H5T_FLOAT, 8): return .float64
        case (H5T_INTEGER, 4): return .int32
        case (H5T_INTEGER, 8): return .int64
        case (H5T_INTEGER, 1): return .uint8
        default: throw StorageError(path: path, problem: "\(objectPath) has an element type records do not use")
        }
    }

    /// Every dataset below `groupPath`, depth first, members in name order.
    public func datasets(under groupPath: String = "/") throws -> [String] {
        var out = [String]()
        for name in try members(of: groupPath) {
            let child = (groupPath == "/" ? "" : groupPath) + "/" + name
            var info = H5O_info_t()
            guard H5Oget_info_by_name2(file, child, &info, UInt32(H5O_INFO_BASIC), 0) >= 0 else {
                throw StorageError(path: path, problem: "cannot inspect \(child)")
            }
            switch info.type {
            case H5O_TYPE_GROUP: out += try datasets(under: child)
            case H5O_TYPE_DATASET: out.append(child)
            default: throw StorageError(path: path, problem: "\(child) is neither a group nor a dataset")
            }
        }
        return out
    }

    /// Names of the attributes of an object, in name order.
    public func attributeNames(on objectPath: String) throws -> [String] {
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(file, objectPath, &info, UInt32(H5O_INFO_NUM_ATTRS), 0) >= 0 else {
            throw StorageError(path: path, problem: "missing object \(objectPath)")
        }
        var names = [String]()
        for i in 0..<info.num_attrs {
            let size = H5Aget_name_by_idx(file, objectPath, H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard size >= 0 else { continue }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            H5Aget_name_by_idx(file, objectPath, H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, 0)
            names.append(String(cString: buffer))
        }
        return names
    }

    public func shape(of objectPath: String) throws -> [Int] {
        let dataset = H5Dopen2(file, objectPath, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "missing dataset \(objectPath)") }
        defer { H5Dclose(dataset) }
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= 8 else { throw StorageError(path: path, problem: "\(objectPath) has an invalid rank") }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.map { Int($0) }
    }

    /// Reads a dataset, which must have exactly `expectedShape` when given (checked before allocating).
    public func read<T: HDF5Element & Numeric>(_ objectPath: String, as _: T.Type = T.self, expectedShape: [Int]? = nil) throws -> (values: [T], shape: [Int]) {
        let shape = try shape(of: objectPath)
        if let expectedShape, expectedShape != shape {
            throw StorageError(path: path, problem: "\(objectPath) has shape \(shape), expected \(expectedShape)")
        }
        let count = shape.reduce(1, *)
        guard count <= 1 << 31 else { throw StorageError(path: path, problem: "\(objectPath) is implausibly large (\(shape))") }
        var values = [T](repeating: 0, count: count)
        if count == 0 { return (values, shape) }
        let dataset = H5Dopen2(file, objectPath, 0)
        defer { H5Dclose(dataset) }
        let status = values.withUnsafeMutableBytes { H5Dread(dataset, T.memoryType, 0, 0, 0, $0.baseAddress) }
        guard status >= 0 else { throw StorageError(path: path, problem: "cannot read \(objectPath) (damaged data or checksum mismatch)") }
        return (values, shape)
    }

    public func stringAttribute(_ name: String, on objectPath: String = "/") throws -> String {
        let attribute = H5Aopen_by_name(file, objectPath, name, 0, 0)
        guard attribute >= 0 else { throw StorageError(path: path, problem: "missing attribute \(objectPath)@\(name)") }
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING, H5Tis_variable_str(type) == 0 else {
            throw StorageError(path: path, problem: "\(objectPath)@\(name) is not a fixed-length string")
        }
        let size = H5Tget_size(type)
        guard size > 0, size < 1 << 20 else { throw StorageError(path: path, problem: "\(objectPath)@\(name) has an invalid size") }
        var bytes = [UInt8](repeating: 0, count: size)
        guard H5Aread(attribute, type, &bytes) >= 0 else { throw StorageError(path: path, problem: "cannot read \(objectPath)@\(name)") }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    public func numberAttribute<T: HDF5Element & Numeric>(_ name: String, as _: T.Type = T.self, on objectPath: String = "/") throws -> T {
        let attribute = H5Aopen_by_name(file, objectPath, name, 0, 0)
        guard attribute >= 0 else { throw StorageError(path: path, problem: "missing attribute \(objectPath)@\(name)") }
        defer { H5Aclose(attribute) }
        var value: T = 0
        guard H5Aread(attribute, T.memoryType, &value) >= 0 else { throw StorageError(path: path, problem: "cannot read \(objectPath)@\(name)") }
        return value
    }
}
