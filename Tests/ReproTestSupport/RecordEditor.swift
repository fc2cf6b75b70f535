import CHDF5
import Foundation
import ReproStorage

/// Edits a finished record as a user with h5py would — new attribute values and types, datasets replaced
/// with other types or shapes, objects removed or added — and then restamps the user-block checksum, so
/// the result is a well-formed, checksummed record that says something the schema may not allow.
public final class RecordEditor {
    public let path: String
    let file: hid_t

    public init(_ path: String) throws {
        self.path = path
        HDF5.ready()
        file = H5Fopen(path, 0x0001 /* H5F_ACC_RDWR */, 0)
        guard file >= 0 else { throw StorageError(path: path, problem: "cannot open the HDF5 file for editing") }
    }

    /// Closes the file and writes the checksum of its new contents.
    public func finish() throws {
        guard H5Fclose(file) >= 0 else { throw StorageError(path: path, problem: "closing failed") }
        try RecordFile.stampChecksum(path)
    }

    public enum Value {
        case int32(Int32), int64(Int64), float32(Float), float64(Double), string(String)
        /// A one-dimensional array attribute of int64.
        case int64Array([Int64])
    }

    public func setAttribute(_ name: String, _ value: Value, on object: String = "/") throws {
        if H5Aexists_by_name(file, object, name, 0) > 0 { H5Adelete_by_name(file, object, name, 0) }
        var dims = [hsize_t(1)]
        var space = H5Screate(H5S_SCALAR)
        var type: hid_t, memory: hid_t, bytes: [UInt8], ownsType = false
        switch value {
        case .int32(let v): (type, memory, bytes) = (H5T_STD_I32LE_g, H5T_NATIVE_INT_g, withUnsafeBytes(of: v) { Array($0) })
        case .int64(let v): (type, memory, bytes) = (H5T_STD_I64LE_g, H5T_NATIVE_LLONG_g, withUnsafeBytes(of: v) { Array($0) })
        case .float32(let v): (type, memory, bytes) = (H5T_IEEE_F32LE_g, H5T_NATIVE_FLOAT_g, withUnsafeBytes(of: v) { Array($0) })
        case .float64(let v): (type, memory, bytes) = (H5T_IEEE_F64LE_g, H5T_NATIVE_DOUBLE_g, withUnsafeBytes(of: v) { Array($0) })
        case .string(let s):
            type = H5Tcopy(H5T_C_S1_g)
            ownsType = true
            bytes = Array(s.utf8)
            if bytes.isEmpty { bytes = [0] }
            H5Tset_size(type, bytes.count)
            memory = type
        case .int64Array(let values):
            H5Sclose(space)
            dims = [hsize_t(values.count)]
            space = H5Screate_simple(1, dims, nil)
            (type, memory, bytes) = (H5T_STD_I64LE_g, H5T_NATIVE_LLONG_g, values.withUnsafeBytes { Array($0) })
        }
        defer { H5Sclose(space); if ownsType { H5Tclose(type) } }
        let attribute = H5Acreate_by_name(file, object, name, type, space, 0, 0, 0)
        guard attribute >= 0 else { throw StorageError(path: path, problem: "cannot create \(object)@\(name)") }
        defer { H5Aclose(attribute) }
        guard bytes.withUnsafeBytes({ H5Awrite(attribute, memory, $0.baseAddress) }) >= 0 else {
            throw StorageError(path: path, problem: "cannot write \(object)@\(name)")
        }
    }

    public func deleteAttribute(_ name: String, on object: String = "/") throws {
        guard H5Adelete_by_name(file, object, name, 0) >= 0 else { throw StorageError(path: path, problem: "no \(object)@\(name)") }
    }

    /// Removes a group or dataset (its link).
    public func delete(_ object: String) throws {
        guard H5Ldelete(file, object, 0) >= 0 else { throw StorageError(path: path, problem: "cannot delete \(object)") }
    }

    public func createGroup(_ group: String) throws {
        let g = H5Gcreate2(file, group, 0, 0, 0)
        guard g >= 0 else { throw StorageError(path: path, problem: "cannot create \(group)") }
        H5Gclose(g)
    }

    public func softLink(_ object: String, pointingTo target: String) throws {
        guard H5Lcreate_soft(target, file, object, 0, 0) >= 0 else { throw StorageError(path: path, problem: "cannot link \(object)") }
    }

    /// The element types a dataset can be rewritten as.
    public enum ElementType {
        case float32, float64, int32, int64, uint32, uint8, float32BigEndian
        var types: (file: hid_t, memory: hid_t, size: Int) {
            switch self {
            case .float32: return (H5T_IEEE_F32LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .float64: return (H5T_IEEE_F64LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .int32: return (H5T_STD_I32LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .int64: return (H5T_STD_I64LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .uint32: return (H5T_STD_U32LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .uint8: return (H5T_STD_U8LE_g, H5T_NATIVE_DOUBLE_g, 8)
            case .float32BigEndian: return (H5T_IEEE_F32BE_g, H5T_NATIVE_DOUBLE_g, 8)
            }
        }
    }

    /// Replaces a dataset by one of `type` and `shape` holding `values` (converted by libhdf5).
    public func replaceDataset(_ object: String, with values: [Double], as type: ElementType, shape: [Int]) throws {
        precondition(values.count == shape.reduce(1, *))
        if H5Lexists(file, object, 0) > 0 { try delete(object) }
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        defer { H5Sclose(space) }
        let dataset = H5Dcreate2(file, object, type.types.file, space, 0, 0, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "cannot create \(object)") }
        defer { H5Dclose(dataset) }
        if values.isEmpty { return }
        guard values.withUnsafeBytes({ H5Dwrite(dataset, type.types.memory, 0, 0, 0, $0.baseAddress) }) >= 0 else {
            throw StorageError(path: path, problem: "cannot write \(object)")
        }
    }

    /// Reads a dataset's values as Double.
    public func values(_ object: String) throws -> [Double] {
        let dataset = H5Dopen2(file, object, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "no \(object)") }
        defer { H5Dclose(dataset) }
        let space = H5Dget_space(dataset)
        defer { H5Sclose(space) }
        let count = Int(H5Sget_simple_extent_npoints(space))
        var out = [Double](repeating: 0, count: count)
        guard out.withUnsafeMutableBytes({ H5Dread(dataset, H5T_NATIVE_DOUBLE_g, 0, 0, 0, $0.baseAddress) }) >= 0 else {
            throw StorageError(path: path, problem: "cannot read \(object)")
        }
        return out
    }

    /// Overwrites a dataset's values in place (same type and shape as stored).
    public func overwrite(_ object: String, with values: [Double]) throws {
        let dataset = H5Dopen2(file, object, 0)
        guard dataset >= 0 else { throw StorageError(path: path, problem: "no \(object)") }
        defer { H5Dclose(dataset) }
        guard values.withUnsafeBytes({ H5Dwrite(dataset, H5T_NATIVE_DOUBLE_g, 0, 0, 0, $0.baseAddress) }) >= 0 else {
            throw StorageError(path: path, problem: "cannot write \(object)")
        }
    }

    /// Changes one value of a dataset in place.
    public func change(_ object: String, at index: Int, to value: Double) throws {
        var v = try values(object)
        v[index] = value
        try overwrite(object, with: v)
    }

    /// Adds an attribute to a dataset.
    public func setDatasetAttribute(_ name: String, _ value: Int32, on object: String) throws {
        try setAttribute(name, .int32(value), on: object)
    }
}
