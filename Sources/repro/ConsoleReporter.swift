import Foundation
import ReproNN
import ReproTraining

/// Prints a run like the notebook does (per-epoch blocks), with a progress bar and ETA on a terminal and
/// plain lines otherwise. Losses are true per-sample means (see `Metrics`).
final class ConsoleReporter: TrainingObserver {
    let interactive = isatty(STDOUT_FILENO) != 0
    var plan: RunPlan?
    var epochStart = DispatchTime.now()
    var runStart = DispatchTime.now()
    var stepInEpoch = 0
    private(set) var epochSeconds: [Double] = []

    func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) {
        self.plan = plan
        runStart = .now()
        print("train \(split.train.count), validation \(split.validation.count); \(plan.stepsPerEpoch) steps per epoch, \(plan.totalSteps) steps in all")
    }

    func runResumed(plan: RunPlan, after step: Int) {
        self.plan = plan
        runStart = .now()
        print("resumed after step \(step); \(plan.totalSteps - step) of \(plan.totalSteps) steps to run")
    }

    func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) {
        print(phase == .before ? "Before training:" : "After training:")
        print(String(format: "\tTraining loss %.5f, Training accuracy %.2f", train.loss, train.accuracy))
        print(String(format: "\tValidation loss %.5f, Validation accuracy %.2f", validation.loss, validation.accuracy))
        print(String(format: "\tTest loss %.5f, Test accuracy %.2f", test.loss, test.accuracy))
        print("-----------------------------------------------------")
        fflush(nil)
    }

    func epochStarted(_ epoch: Int, order: [Int32]) {
        epochStart = .now()
        stepInEpoch = 0
    }

    func stepFinished(_ outcome: StepOutcome) {
        let step = outcome.step, loss = outcome.loss
        stepInEpoch += 1
        guard interactive, let plan, stepInEpoch % 5 == 0 || step == plan.totalSteps else { return }
        let elapsed = Self.seconds(since: runStart)
        let eta = elapsed / Double(step) * Double(plan.totalSteps - step)
        let width = 30, filled = width * stepInEpoch / max(plan.stepsPerEpoch, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        print(String(format: "\r  [%@] step %d/%d  loss %.4f  ETA %.0fs ", bar, step, plan.totalSteps, loss, eta), terminator: "")
        fflush(nil)
    }

    func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) {
        let seconds = Self.seconds(since: epochStart)
        epochSeconds.append(seconds)
        if interactive { print("\r" + String(repeating: " ", count: 78) + "\r", terminator: "") }
        print("Epoch: \(epoch + 1)" + String(format: "  (%.1f s)", seconds))
        print(String(format: "\tTraining loss %.5f, Training accuracy %.2f", train.loss, train.accuracy))
        print(String(format: "\tValidation loss %.5f, Validation accuracy %.2f", validation.loss, validation.accuracy))
        print("-----------------------------------------------------")
        fflush(nil)  // a log file or CI console sees each epoch as it ends
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
