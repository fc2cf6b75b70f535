import ArgumentParser
import Foundation
import ReproRecording
import ReproTensorBoard

/// `repro tensorboard RECORD.h5…`: TensorBoard event files from existing records (goldens included).
struct TensorBoardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensorboard",
        abstract: "Write TensorBoard event files from records: <logdir>/<run name>/events.out.tfevents.*",
        discussion: "Then: tensorboard --logdir runs. A record that cannot be used is reported and the others are still written.\n\n"
            + ExitCodes.contract)

    @Argument(help: "Records to convert.") var records: [String]
    @Option(help: "Folder of the TensorBoard runs.") var logdir = "runs"

    func run() throws {
        var failed = false
        for path in records {
            do {
                print("wrote " + (try TensorBoardExport.write(try Record(path: path), logdir: logdir)))
            } catch let error as RecordError {
                FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
                failed = true
            } catch {
                FileHandle.standardError.write(Data("error: \(logdir): cannot write the event file (\(error))\n".utf8))
                failed = true
            }
        }
        if failed { throw ExitCode(2) }
    }
}
