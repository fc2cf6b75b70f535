import Testing
import ReproVerify

@Suite struct BatchNormCheckTests {
    @Test func everyCheckPassesOnTheRealLayer() throws {
        let rows = try BatchNormChecks.run()
        let failing = rows.filter { !$0.passed }.map { "\($0.caseName): \($0.check)" }
        #expect(failing.isEmpty, "\(failing)")
        // Every kind of check is present, on the model's shapes too.
        for kind in ["forward f32", "backward vs central", "running buffers", "whole network"] {
            #expect(rows.contains { $0.check.hasPrefix(kind) }, "\(kind)")
        }
        #expect(rows.contains { $0.caseName.contains("N=128 C=6 28×28") && $0.check.hasPrefix("backward") })
    }

    /// Negative controls: each broken variant fails the check that should catch it.
    @Test(arguments: [
        (BatchNormChecks.Fault.wrongGammaGradient, "backward vs central"),
        (.gammaGradientOnePPM, "backward vs central"),
        (.inputGradientOnePPM, "backward vs central"),
        (.biasedStd, "forward f32"),
        (.momentumOnNewValue, "running buffers"),
        (.missingOneMinusMomentum, "running buffers"),
    ])
    func brokenLayersAreCaught(fault: BatchNormChecks.Fault, caughtBy check: String) throws {
        let rows = try BatchNormChecks.run(fault: fault)
        #expect(rows.contains { !$0.passed && $0.check.hasPrefix(check) }, "\(fault) not caught by \(check)")
    }
}
