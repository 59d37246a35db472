"""What the Airflow side (``emr_inference``) and the job share, defined once (docs/CONTRACTS.md).

* :mod:`.settings`: every job setting: its name in the pipeline config and the resolved request,
  its command-line flag, its single default and help text. The job's argparse parser
  (:func:`batch_inference.cli.build_parser`), the step's argument list
  (:func:`emr_inference.job_command.job_arguments`) and the pipeline config's fields
  (:mod:`emr_inference.config`) are generated from it.
* :mod:`.formats`: the objects the two sides exchange in S3: the key manifest (version, document,
  shard names, :class:`~.formats.ManifestError`), the staged output's part and metrics part names,
  the metrics part's fields (:class:`~.formats.Metric`).
* :mod:`.s3`: the one S3 URI type (:class:`~.s3.S3Uri`: strict :meth:`~.s3.S3Uri.parse` for URIs
  people write, lenient :func:`~.s3.parse_s3_uri` for what the job is handed and reads) and the
  encryption arguments of every object either side writes (:func:`~.s3.encryption_args`).

Standard library only, and cheap to import: the DAG files import it at parse time.
"""
