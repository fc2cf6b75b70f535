import Foundation
import ReproRecording
import ReproTraining

/// Writes a record's numbers as TensorBoard scalars: the notebook's four (`train/loss`, `val/loss`,
/// `train/accuracy`, `val/accuracy` at step 0 from the evaluation before training, then at e + 1 from
/// epoch e's metrics), and beyond the notebook, per optimizer step: `step/loss`, `step/accuracy`, and for
/// each BatchNorm layer the mean over channels of |running_mean| and of running_std and of the batch
/// statistics (`bn1/mean_abs_running_mean`, …) at the steps the record keeps. `repro record` and
/// `repro tensorboard` both write through here, so a record's event file is the same however it was made.
public enum TensorBoardExport {
    /// The scalars of one record, in the order they are written: (tag, step, value).
    public static func scalars(of record: Record) throws -> [(tag: String, step: Int, value: Float)] {
        var out = [(String, Int, Float)]()
        let before = try (loss: record.values(RecordSchema.evaluation("before", .loss)).values,
                          accuracy: record.values(RecordSchema.evaluation("before", .accuracy)).values)
        // Step 0: the evaluation before training (train and validation sets, as the notebook logs them).
        out += [("train/loss", 0, Float(before.loss[0])), ("val/loss", 0, Float(before.loss[1])),
                ("train/accuracy", 0, Float(before.accuracy[0])), ("val/accuracy", 0, Float(before.accuracy[1]))]
        let epochs = try RecordSchema.EpochSeries.allCases.map { try record.values(RecordSchema.epochSeries($0)).values }
        for e in 0..<(epochs.first?.count ?? 0) {
            out += [("train/loss", e + 1, Float(epochs[0][e])), ("val/loss", e + 1, Float(epochs[2][e])),
                    ("train/accuracy", e + 1, Float(epochs[1][e])), ("val/accuracy", e + 1, Float(epochs[3][e]))]
        }
        let loss = try record.values(RecordSchema.stepLoss).values, accuracy = try record.values(RecordSchema.stepAccuracy).values
        var batchNorm = [(name: String, channels: Int, series: [(RecordSchema.BatchNormSeries, [Double])])]()
        for bn in record.layout.batchNorms {
            batchNorm.append((bn.name, bn.channels,
                              try RecordSchema.BatchNormSeries.recorded(by: bn).map { ($0, try record.values(RecordSchema.stepBatchNorm(bn.name, $0)).values) }))
        }
        for s in 0..<loss.count {
            out += [("step/loss", s + 1, Float(loss[s])), ("step/accuracy", s + 1, Float(accuracy[s]))]
            for bn in batchNorm {
                for (kind, values) in bn.series {
                    let row = values[(s * bn.channels)..<((s + 1) * bn.channels)]
                    guard row.allSatisfy({ !$0.isNaN }) else { continue }  // not kept by the golden profile
                    // Summed in Float64 in channel order: the same value every time.
                    let mean = (kind == .runningMean || kind == .batchMean ? row.reduce(0) { $0 + abs($1) } : row.reduce(0, +)) / Double(bn.channels)
                    let name = kind == .runningMean || kind == .batchMean ? "mean_abs_\(kind.rawValue)" : "mean_\(kind.rawValue)"
                    out.append(("\(bn.name)/\(name)", s + 1, Float(mean)))
                }
            }
        }
        return out
    }

    /// Writes `<logdir>/<run name>/events.out.tfevents.<created>.repro` (temporary file, then rename) and
    /// returns its path. The wall time of every event is the record's `created` (SOURCE_DATE_EPOCH) or 0, so
    /// the file is the same every time.
    @discardableResult
    public static func write(_ record: Record, logdir: String) throws -> String {
        let wallTime = Double(record.header.created) ?? 0
        var file = EventFile(wallTime: wallTime)
        for (tag, step, value) in try scalars(of: record) { file.scalar(tag, value, step: step) }
        let folder = logdir + "/" + record.config.name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/events.out.tfevents.\(Int(wallTime)).repro"
        try Data(file.bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }
}
