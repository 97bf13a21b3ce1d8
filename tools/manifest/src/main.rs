//! `tessera-manifest check FILE` and `tessera-manifest build FILE --bin-dir DIR --out FILE`.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Checks a Tessera system manifest and builds its bootfs image")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the manifest and print its tasks.
    Check { manifest: PathBuf },
    /// Check the manifest and pack it with each task's binary into a bootfs.
    Build {
        manifest: PathBuf,
        /// Directory holding each task's binary, by its `binary` name.
        #[arg(long)]
        bin_dir: PathBuf,
        /// Where to write the bootfs image.
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), tessera_manifest::Errors> {
    match cli.command {
        Command::Check { manifest } => {
            let m = tessera_manifest::load(&manifest)?;
            print!("{}", tessera_manifest::summary(&m));
            println!("{}: ok", manifest.display());
        }
        Command::Build { manifest, bin_dir, out } => {
            let m = tessera_manifest::load(&manifest)?;
            let image = tessera_manifest::build_image(&m, &bin_dir)?;
            std::fs::write(&out, &image).map_err(|e| {
                tessera_manifest::Errors(vec![tessera_manifest::Error {
                    subject: out.display().to_string(),
                    field: String::new(),
                    message: format!("cannot write: {e}"),
                }])
            })?;
            print!("{}", tessera_manifest::summary(&m));
            println!("wrote {} ({} bytes)", out.display(), image.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
