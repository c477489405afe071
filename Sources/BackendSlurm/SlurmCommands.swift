import BatchBackend

/// Slurm's commands (sbatch, squeue, scancel, sacct) run through the
/// shared runner: separate words, a deadline, as the submitter.
public typealias SlurmCommands = Commands
