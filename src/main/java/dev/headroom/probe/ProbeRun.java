package dev.headroom.probe;

import java.util.List;
import java.util.Map;

/**
 * A whole probing run as reported: the task and its control task, probed on a trained model and on
 * an untrained one of the same shapes, and the majority-per-word baseline.
 *
 * @param task        the task's name (e.g. "pos")
 * @param controlTask its control task's name ("pos-control")
 * @param classes     the task's label names
 * @param trained     the study of the trained model (both tasks)
 * @param random      the study of the untrained model (both tasks), or null when not run
 * @param baselineDev the majority-per-word baseline on dev; {@code baselineTest} on test
 * @param settings    what the run was given (sentences, seed, λ grid, …), for the reports
 */
public record ProbeRun(String task, String controlTask, List<String> classes, ProbeStudy.Outcome trained, ProbeStudy.Outcome random,
                       ProbeTask.Baseline baselineDev, ProbeTask.Baseline baselineTest, Map<String, Object> settings) {

    /** The task's result for a representation of the trained (or untrained) model. */
    public ProbeStudy.Result result(boolean trainedModel, String taskName, int representation) {
        ProbeStudy.Outcome o = trainedModel ? trained : random;
        return o == null ? null : o.result(taskName, representation);
    }

    /** Test accuracy of the task minus that of the control task (Hewitt and Liang's selectivity). */
    public double selectivity(boolean trainedModel, int representation) {
        return result(trainedModel, task, representation).testAccuracy() - result(trainedModel, controlTask, representation).testAccuracy();
    }
}
