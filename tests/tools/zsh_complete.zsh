#!/usr/bin/zsh -f
# zsh_complete.zsh FPATH_DIR LINE: what zsh offers for LINE after TAB, as a real interactive
# zsh in a pseudo-terminal does, one candidate a line.
zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PROMPT=''; RPROMPT=''; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'zstyle ":completion:*" list-prompt ""; zstyle ":completion:*" select-prompt ""'
# Every candidate offered is printed; the quotes keep the echo of these lines from matching.
zpty -w z 'compadd() { local -a h; builtin compadd -O h "$@"; print -rl -- ${h/#/"HI""T:"}; builtin compadd "$@" }'
zpty -w z '__done() { print -r -- "__DO""NE__"; exit }; comppostfuncs=(__done)'
zpty -n -w z "$2"$'\t'
local line
typeset -aU hits
integer deadline=$(( SECONDS + 30 ))
while (( SECONDS < deadline )); do
  zpty -rt z line || { sleep 0.02; continue }
  line=${line//$'\r'/}
  [[ $line == *__DONE__* ]] && break
  [[ $line == *HIT:* ]] && hits+=(${line##*HIT:})
done
zpty -d z
print -rl -- $hits
