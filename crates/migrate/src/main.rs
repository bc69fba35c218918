//! The `ferrolb-migrate` binary: read MetalLB manifests from files, directories or stdin, write
//! the ferrolb objects to stdout or a file, and the report to stderr.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use ferrolb_migrate::{Options, convert, report, yaml};

const LONG_ABOUT: &str = "\
Converts a MetalLB configuration into ferrolb objects.

Reads metallb.io/v1beta1 IPAddressPool and L2Advertisement objects, the deprecated AddressPool, \
and MetalLB's legacy configuration ConfigMap (data.config), as multi-document YAML or JSON \
(kind: List accepted, e.g. the output of `kubectl get ipaddresspools.metallb.io,\
l2advertisements.metallb.io -n metallb-system -o yaml`). Writes the ferrolb.io/v1beta1 \
equivalents as multi-document YAML, all in one namespace.

Everything that is not converted is listed on stderr with the reason: BGP objects (BGPPeer, \
BGPAdvertisement, BFDProfile, Community, legacy peers), status objects, unknown kinds and every \
unknown field. Left out without a report, because they describe the MetalLB object rather than \
the configuration: the metadata the apiserver writes (uid, resourceVersion, generation, \
creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds, managedFields, \
ownerReferences, selfLink), metadata.namespace (replaced by --namespace), status, the \
kubectl.kubernetes.io/last-applied-configuration annotation, and the legacy ConfigMap's own \
metadata.";

const AFTER_HELP: &str = "\
Exit status: 0 when everything was converted; 2 when something was not converted (the objects \
that could be converted are still written); 1 on a usage error, or when the input cannot be \
read or the output cannot be written (nothing is written).";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = "Converts a MetalLB configuration into ferrolb objects", long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Args {
    /// MetalLB manifests: files, or directories whose *.yaml, *.yml and *.json files are read in
    /// name order. `-` or no argument reads standard input.
    inputs: Vec<PathBuf>,

    /// Write the ferrolb objects to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Namespace of every ferrolb object written: the namespace ferrolb runs in, since it reads
    /// its pools and advertisements only from there.
    #[arg(
        short,
        long,
        env = "FERROLB_NAMESPACE",
        default_value = ferrolb_migrate::DEFAULT_NAMESPACE,
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    namespace: String,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // clap exits 2 on a usage error, which here means "partly converted".
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(1);
        }
        // --help and --version.
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            // Best effort: if stderr itself is gone there is nobody left to tell.
            let _ = writeln!(io::stderr().lock(), "ferrolb-migrate: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Converts and writes; `Ok(true)` when everything was converted.
fn run(args: &Args) -> anyhow::Result<bool> {
    let mut documents = vec![];
    for (name, text) in read_inputs(&args.inputs)? {
        let parsed = yaml::parse_documents(&text).with_context(|| format!("cannot read {name}"))?;
        documents.extend(parsed);
    }
    let conversion = convert(
        &documents,
        &Options {
            namespace: args.namespace.clone(),
        },
    );
    let text = yaml::render(&conversion.ferrolb_objects())?;
    match &args.output {
        Some(path) => {
            fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")?;
        }
    }
    io::stderr()
        .lock()
        .write_all(report(&conversion).as_bytes())
        .context("cannot write the report to standard error")?;
    Ok(conversion.is_complete())
}

/// The text of every input, with the name to use in error messages.
fn read_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let stdin = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &stdin[..]
    } else {
        inputs
    };
    let mut texts = vec![];
    for input in inputs {
        if input == Path::new("-") {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            texts.push(("standard input".to_owned(), text));
        } else if input.is_dir() {
            for path in manifests_in(input)? {
                texts.push(read_file(&path)?);
            }
        } else {
            texts.push(read_file(input)?);
        }
    }
    Ok(texts)
}

fn read_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// The manifest files directly inside `dir`, sorted by name.
fn manifests_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    let mut paths = vec![];
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read directory {}", dir.display()))?
            .path();
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
