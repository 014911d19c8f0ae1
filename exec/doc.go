// Package exec runs jobs on a provider.
//
// Native runs a job on this machine, on GPUs the caller has already
// assigned to it:
//
//	n, err := exec.NewNative(exec.Config{WorkDir: dir, Logger: log, GPUs: detector.Detect})
//	res, err := n.Run(ctx, job, gpus) // res is filled in either way; err says why the job failed
//
// One Run goes through the same steps for every kind:
//
//  1. Dispatch by kind (Native.runnerFor, the one place that knows the
//     kinds): noop, test and benchmark are built in and always allowed;
//     command needs Config.AllowCommands (else a CodeForbidden error);
//     container is where the Docker executor slots in (for now a
//     CodeUnavailable error saying this build has none).
//  2. A private run directory under Config.WorkDir (mode 0700) with a
//     scratch directory inside: the job's working directory, HOME and
//     TMPDIR. It is removed when Run returns, whatever happened.
//  3. Setup: the job's input URL, if any, is downloaded with a size cap
//     (over the cap fails, nothing is truncated) and checked against its
//     sha256. Its duration is JobResult.SetupTime.
//  4. The run itself, bounded by the job's timeout and by ctx; its
//     duration is JobResult.ExecutionTime. Command jobs run their argv
//     without a shell in their own process group with a scrubbed
//     environment (PATH, HOME, TMPDIR, the job's env, NODE3_JOB_ID,
//     CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES naming the assigned
//     GPU indices, NODE3_INPUT, NODE3_OUTPUT); on timeout or cancellation
//     the whole group is killed, and the group is killed after a normal
//     exit too, so that nothing the job started outlives it. Output
//     (stdout and stderr together) passes through a bounded buffer that
//     keeps the tail.
//  5. Result upload, if the job has an output URL and succeeded: the file
//     the job wrote at $NODE3_OUTPUT, else its stdout (for built-in kinds,
//     their output text), PUT with a size cap; its sha256 is
//     JobResult.OutputSHA256. A failed upload fails the job.
//
// URLs are logged and reported by scheme and host only (query strings
// often carry signatures), and no environment value or command argument
// is ever logged.
//
// A Native holds no mutable state and may run many jobs at once. Every
// goroutine a Run starts has ended when it returns.
package exec
