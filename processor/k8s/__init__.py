"""Lumiflow on Kubernetes, from the laptop's side and the run driver's side.

The ``Analysis`` resource (``analyses.lumiflow.io``, CRD in ``charts/lumiflow/crds/``) carries an
analysis module's source and a fileset; the operator in ``operators/lumiflow_operator`` turns it
into a dask-kubernetes ``DaskJob`` whose runner executes ``lumiflow run --report-to``, and the
run driver writes progress back into the Analysis' status.

- :mod:`.api`: the resource's coordinates and a client configured from kubeconfig or in-cluster.
- :mod:`.submit`: build and create an Analysis (``lumiflow submit``), read and render its status.
- :mod:`.reporter`: the run driver's status reporter (fed by the executor's ``on_file`` callback).
- :mod:`.results`: outputs kept in a ConfigMap beside the Analysis, and fetching them back.

Needs the ``kubernetes`` extra (``pip install 'lumiflow[kubernetes]'``).
"""
