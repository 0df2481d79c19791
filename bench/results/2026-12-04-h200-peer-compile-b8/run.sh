source bench/h200.sh
echo "commit $(cat .cache/rev 2>/dev/null)" >> "$RESULTS/commands.txt"
presets bloom-560m opt-1.3b
finish
# HF static cache + torch.compile at batch 8, the two shapes not yet measured there (compiling takes minutes)
for m in bloom-560m:235 opt-1.3b:265; do
  p=${m%%:*}; t=${m##*:}
  log "timeout $t python3 bench/peers/hf_peer.py --model /tmp/$p --batch_sizes 8 --compile"
  PYTHONUNBUFFERED=1 timeout "$t" python3 bench/peers/hf_peer.py --model "/tmp/$p" --batch_sizes 8 --compile --out "$RESULTS/peer-$p-compile-b8.json" 2> "$RESULTS/peer-$p-compile-b8.log"
  echo "$p rc $?"; finish
done
