import ArgumentParser

@main
struct Repro: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repro",
        abstract: "Seeded, recorded and verifiable LeNet-5 training.",
        discussion: ExitCodes.contract,
        version: ReproVersion.string,
        subcommands: [RecordCommand.self, VerifyCommand.self, CompareCommand.self, InspectCommand.self, TensorBoardCommand.self,
                      CheckBNCommand.self, BenchCommand.self])
}

enum ReproVersion {
    static let string = "0.1.0"
}
