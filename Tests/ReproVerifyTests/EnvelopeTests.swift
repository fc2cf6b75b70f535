import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining
import ReproVerify

/// The round-off envelope: its code, its measurement and storage, and the three-level verdict it gives —
/// on the tiny fixture (14 steps, windows of 4), with planted legitimate changes (every GEMM summed in
/// reverse) and planted regressions, and the negative controls (a factor of 0; a golden without one).
@Suite(.serialized) struct EnvelopeTests {
    /// One golden with an envelope of 4 replicas, and the same run without one.
    static let fixture = try! Fixture(name: "envelope")
    static let golden: String = try! record("golden", replicas: 4)
    static let bare: String = try! fixture.record("bare")

    static func record(_ name: String, replicas: Int) throws -> String {
        let path = fixture.directory + "/" + name + ".h5"
        try Recording.record(config: fixture.config, data: fixture.data, to: path, checks: checkTable,
                             amending: EnvelopeMeasurement.amending(data: fixture.data, replicas: replicas, threads: 1))
        return path
    }

    static func verify(_ path: String, fault: Verifier.RerunFault? = nil, override: ComparisonMode? = nil,
                       factor: Double = TolerancePolicy.envelopeSafetyFactor) throws -> ComparisonReport {
        var verifier = Verifier(dataDirectory: fixture.dataDirectory, checks: checkTable, override: override)
        verifier.fault = fault
        verifier.envelopeFactor = factor
        return try verifier.verify(path)
    }

    /// Hand-computed codes: code c stands for 2^(c − 160); a distance gets the smallest power of two ≥ it.
    @Test func codesRoundUpToAPowerOfTwo() {
        #expect(Envelope.code(covering: 1) == 160 && Envelope.width(160) == 1)
        #expect(Envelope.code(covering: 0.75) == 160)
        #expect(Envelope.code(covering: 1.0000001) == 161 && Envelope.width(161) == 2)
        #expect(Envelope.code(covering: 0x1p-149) == 11)
        #expect(Envelope.code(covering: 1e-300) == 1, "clamped to the smallest width")
        #expect(Envelope.code(covering: .infinity) == 255)
        #expect(Envelope.width(0) == 0, "code 0: no envelope")
        for v in randomValues(1000, seed: 5) {
            let d = Double(sign: .plus, exponent: Int(v * 25), significand: 1 + abs(v).truncatingRemainder(dividingBy: 1))
            let w = Envelope.width(Envelope.code(covering: d))
            #expect(w >= d && w < 2 * d, "\(d) → \(w)")
        }
    }

    /// The envelope is stored, covers every compared float value of the windows, is at least each value's
    /// quantum, and the same replicas give the same bytes.
    @Test func storedCoveringAndDeterministic() throws {
        let record = try Record(path: Self.golden)
        #expect(record.envelopeReplicas == 4)
        #expect(record.header.schemaVersion == RecordSchema.version)
        let steps = record.plan.totalSteps
        let loss = try #require(try record.envelopeCodes(RecordSchema.stepLoss, rows: 0..<steps))
        let values = try record.values(RecordSchema.stepLoss).values
        for (code, value) in zip(loss, values) { #expect(Envelope.width(code) >= Double(Float(value).ulp), "loss \(value): code \(code)") }
        let accuracy = try #require(try record.envelopeCodes(RecordSchema.stepAccuracy, rows: 0..<steps))
        #expect(accuracy.allSatisfy { Envelope.width($0) >= 100.0 / 32 }, "an accuracy's envelope is at least one sample of 32")
        #expect(try record.envelopeCodes(RecordSchema.trainIndices, rows: 0..<1) == nil, "integers carry no envelope")
        let again = try Self.record("again", replicas: 4)
        #expect(FileManager.default.contents(atPath: again) == FileManager.default.contents(atPath: Self.golden))
        #expect(try Record(path: Self.bare).envelopeReplicas == nil)
    }

    /// The committed short golden's envelope is what its replicas give: window 0 measured again, code for
    /// code (the other windows take the same path from their checkpoints).
    @Test func committedGoldenEnvelopeIsReproducible() throws {
        let golden = try Record(path: CommittedGoldens.mnistBN)
        let replicas = try #require(golden.envelopeReplicas)
        let directory = CommittedGoldens.folder.deletingLastPathComponent().appendingPathComponent("Data/mnist").path
        let data = try ImageDataset.load(.mnist, directory: directory)
        let measured = try EnvelopeMeasurement.measure(golden, data: data, replicas: replicas, threads: 2, windows: [0])
        let window = golden.plan.windows[0]
        for path in [RecordSchema.stepLoss, RecordSchema.stepBatchNorm("bn2", .batchStd), RecordSchema.probeLargest,
                     RecordSchema.forwardProbeLargest] {
            let width = golden.shape(of: path).dropFirst().reduce(1, *)
            let rows = path == RecordSchema.forwardProbeLargest ? 0..<golden.shape(of: path)[0] : window.start..<window.end
            let stored = try #require(try golden.envelopeCodes(path, rows: rows))
            let again = Array(try #require(measured.codes[path])[(rows.lowerBound * width)..<(rows.upperBound * width)])
            #expect(stored == again, "\(path)")
            #expect(again.allSatisfy { $0 > 0 }, "\(path): every value of window 0 has an envelope")
        }
    }

    @Test func identicalBits() throws {
        let report = try Self.verify(Self.golden)
        #expect(report.verdict == .identical && report.passed)
    }

    /// Every GEMM summed in reverse: bits differ, every value within its envelope. The exact gate fails and
    /// says so; `--tolerance envelope` passes; with the factor 0 (negative control) it is drift.
    @Test func reorderedSumsAreWithinRoundOff() throws {
        let exact = try Self.verify(Self.golden, fault: .reversedGEMM)
        #expect(exact.verdict == .withinRoundOff && !exact.passed)
        #expect(Report.text(exact).hasPrefix("DIFFERS "))
        let gated = try Self.verify(Self.golden, fault: .reversedGEMM, override: .envelope(factor: TolerancePolicy.envelopeSafetyFactor))
        #expect(gated.verdict == .withinRoundOff && gated.passed)
        #expect((gated.worstEnvelope?.worstEnvelopeRatio ?? .infinity) <= TolerancePolicy.envelopeSafetyFactor)
        let json = Report.jsonObject(gated)
        #expect(json["verdict"] as? String == "within-round-off")
        let control = try Self.verify(Self.golden, fault: .reversedGEMM, override: .envelope(factor: 0), factor: 0)
        #expect(control.verdict == .drift && !control.passed)
    }

    /// Regressions leave the envelope at the step they act, in their pass and layer.
    @Test(arguments: [
        (Verifier.RerunFault.learningRate, 1, "update"),
        (.batchNormEpsilon, 1, "forward"),
        (.lossGradient, 1, "backward"),
        (.initialWeight, 0, "forward"),
    ])
    func regressionsDrift(_ fault: Verifier.RerunFault, step: Int, pass: String) throws {
        let report = try Self.verify(Self.golden, fault: fault, override: .envelope(factor: TolerancePolicy.envelopeSafetyFactor))
        #expect(report.verdict == .drift && !report.passed)
        let first = try #require(report.firstBeyondEnvelope)
        #expect(first.step == step, "\(fault): \(first.description)")
        #expect(first.point?.pass.rawValue == pass, "\(fault): \(first.description)")
    }

    /// Which golden gets which gate: an OpenBLAS golden elsewhere by its envelope (without one, the stored
    /// tolerance); on its own environment exactly; a portable golden re-run with the other kernels by its envelope.
    @Test func policyUsesTheEnvelopeWhereBitsMayDiffer() {
        let here = EnvironmentFacts(current: .blas)
        var there = here
        there.facts = there.facts.map { $0.name == "openblas_core" ? ($0.name, "Elsewhere") : $0 }
        func mode(_ kernels: KernelChoice, golden: EnvironmentFacts, envelope: Bool, other: KernelChoice? = nil) -> ComparisonMode {
            TolerancePolicy.resolve(stored: StoredPolicy(for: kernels), kernels: kernels, goldenEnvironment: golden, here: here,
                                    override: nil, hasEnvelope: envelope, otherKernels: other).mode
        }
        #expect(mode(.blas, golden: there, envelope: true).isEnvelope)
        #expect(mode(.blas, golden: there, envelope: false) == TolerancePolicy.crossEnvironmentBLAS)
        #expect(mode(.blas, golden: here, envelope: true) == .exact)
        #expect(mode(.portable, golden: there, envelope: true) == .exact)
        #expect(mode(.portable, golden: here, envelope: true, other: .blas).isEnvelope)
        #expect(mode(.portable, golden: here, envelope: false, other: .blas) == TolerancePolicy.crossEnvironmentBLAS)
    }

    /// A golden without an envelope: a reordering is drift under the exact gate, and asking for the
    /// envelope falls back to bit for bit with the reason.
    @Test func withoutAnEnvelope() throws {
        let report = try Self.verify(Self.bare, fault: .reversedGEMM)
        #expect(report.verdict == .drift && report.envelopeReplicas == nil)
        #expect(Report.text(report).contains("the golden has no round-off envelope"))
        let asked = try Self.verify(Self.bare, fault: .reversedGEMM, override: .envelope(factor: TolerancePolicy.envelopeSafetyFactor))
        #expect(asked.mode == .exact && asked.modeReason.contains("no round-off envelope") && !asked.passed)
    }
}

