"""fetch: the four Fashion-MNIST IDX files, decompressed and checked, the same bytes from any source.

Inputs: none that DVC tracks. Sources, in order: ``--local`` (a folder of the published .gz files,
e.g. downloaded by hand; read only), the installed Debian package, ``apt-get download``, the
official address. Every file is checked by the SHA-256 of its decompressed content, so the output
cannot depend on the source: that is why no source is a dep, and why the Debian gzip and
upstream's give the same ``dvc.lock``.
Params: data.verify (fashion-mnist: fetch; none: the user's own data.dir is used, nothing is
fetched and the folder holds only a note saying so).
Outputs: ``--out`` (a folder: train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain IDX).
"""

import argparse
import tempfile
from pathlib import Path

from fmproto.data import download
from fmproto.pipeline import io
from fmproto.pipeline import guard
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import data as data_params

NOTE = "NOT-FETCHED.txt"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--local", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    with guard.stage_errors("fetch", folders=[out]):
        data = P.read_params("data", {"verify": data_params.SPEC["verify"]}, args.params, partial=True)
        if data["verify"] == "none":
            with io.atomic_path(out / NOTE) as tmp:
                tmp.write_text("Nothing fetched: data.verify is none, so ingest reads data.dir as it is.\n")
            message = f"{out}: nothing fetched (data.verify: none)"
        else:
            # The .gz files are staged outside the output, which holds only the decompressed content.
            with tempfile.TemporaryDirectory(prefix="fmproto-fetch-") as staging:
                try:
                    _, origin = download.fetch_with_origin(staging, local_dirs=[args.local], log=print)
                    for name in download.FILES:
                        with io.atomic_path(out / download.plain_name(name)) as tmp, tmp.open("wb") as f:
                            download.write_content(Path(staging, name), name, f)
                except download.FetchError as err:  # named by the output, not the temp folder that staged it
                    raise ValueError(str(err).replace(staging, str(out))) from None
            message = f"{out}: {len(download.FILES)} Fashion-MNIST files, decompressed and verified ({origin})"
    print(message)


if __name__ == "__main__":
    main()
