#!/bin/bash
# DDP pretraining across nodes without a scheduler: run this on every node with the same
# MASTER_ADDR and NNODES, and NODE_RANK 0..NNODES-1. Lightning picks up torchrun's
# environment (TorchElasticEnvironment). params.yaml must agree:
#   pretrain: {accelerator: gpu, devices: 8, num_nodes: $NNODES, strategy: ddp}
#   MASTER_ADDR=10.0.0.1 NNODES=2 NODE_RANK=0 infra/multinode/torchrun.sh
set -euo pipefail
: "${MASTER_ADDR:?}" "${NNODES:?}" "${NODE_RANK:?}"
cd "${BERTPIPE_WORKDIR:-$PWD}"
exec .venv/bin/torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "${GPUS_PER_NODE:-8}" \
  --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
  -m bertpipe.stages.pretrain --params params.yaml --family "${FAMILY:-bert}" \
  --data data/pretrain --tokenizer models/tokenizer --out "models/pretrained/${FAMILY:-bert}" \
  --checkpoints "checkpoints/pretrain/${FAMILY:-bert}" --summary "results/pretrain/${FAMILY:-bert}.json" --metrics "metrics/pretrain/${FAMILY:-bert}.json" \
  --plots "metrics/pretrain_curves/${FAMILY:-bert}"
