# shellcheck shell=bash disable=SC2034 # json_value is read by the callers
# Reads one string out of a JSON document with bash builtins only (cdk-agent-fleet): the answers of
# Secrets Manager and Parameter Store, and a secret that is itself a JSON object. Functions only:
# the renderer inlines this file. The text may hold a secret, so nothing here starts a process
# or passes the text to one; the value lands in the unexported variable json_value.

json_text=''
json_pos=0
json_value=''
json_string=''
json_want=()
json_found=''

json_ws() {
  while [[ "${json_text:json_pos:1}" == [$' \t\r\n'] ]]; do json_pos=$((json_pos + 1)); done
}

# Appends the UTF-8 bytes of a code point to json_string.
json_utf8() {
  local code=$1 escapes char
  if ((code < 0x80)); then
    printf -v escapes '\\x%02x' "$code"
  elif ((code < 0x800)); then
    printf -v escapes '\\x%02x\\x%02x' $((0xC0 | code >> 6)) $((0x80 | (code & 0x3F)))
  elif ((code < 0x10000)); then
    printf -v escapes '\\x%02x\\x%02x\\x%02x' $((0xE0 | code >> 12)) $((0x80 | (code >> 6 & 0x3F))) $((0x80 | (code & 0x3F)))
  else
    printf -v escapes '\\x%02x\\x%02x\\x%02x\\x%02x' $((0xF0 | code >> 18)) $((0x80 | (code >> 12 & 0x3F))) \
      $((0x80 | (code >> 6 & 0x3F))) $((0x80 | (code & 0x3F)))
  fi
  printf -v char '%b' "$escapes"
  json_string+=$char
}

# Reads the string at json_pos into json_string, unescaped (\" \\ \/ \b \f \n \r \t \uXXXX with
# surrogate pairs). 2: not a JSON string; 3: it holds U+0000, which no shell variable can.
json_read_string() {
  local c hex code low plain='^[^"\\]+' low_surrogate='^[\\]u[dD][c-fC-F][0-9A-Fa-f]{2}$'
  json_string=''
  [[ "${json_text:json_pos:1}" == '"' ]] || return 2
  json_pos=$((json_pos + 1))
  while :; do
    # A run of plain characters at once, then one special character.
    if [[ "${json_text:json_pos:256}" =~ $plain ]]; then
      json_string+=${BASH_REMATCH[0]}
      json_pos=$((json_pos + ${#BASH_REMATCH[0]}))
      continue
    fi
    c=${json_text:json_pos:1}
    json_pos=$((json_pos + 1))
    case "$c" in
      '') return 2 ;;
      '"') return 0 ;;
    esac
    c=${json_text:json_pos:1}
    json_pos=$((json_pos + 1))
    case "$c" in
      '"' | \\ | '/') json_string+=$c ;;
      b) json_string+=$'\b' ;;
      f) json_string+=$'\f' ;;
      n) json_string+=$'\n' ;;
      r) json_string+=$'\r' ;;
      t) json_string+=$'\t' ;;
      u)
        hex=${json_text:json_pos:4}
        [[ "$hex" =~ ^[0-9A-Fa-f]{4}$ ]] || return 2
        json_pos=$((json_pos + 4))
        code=$((16#$hex))
        if ((code >= 0xD800 && code <= 0xDBFF)) && [[ "${json_text:json_pos:6}" =~ $low_surrogate ]]; then
          low=$((16#${json_text:json_pos+2:4}))
          json_pos=$((json_pos + 6))
          code=$((0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
        fi
        ((code != 0)) || return 3
        json_utf8 "$code"
        ;;
      *) return 2 ;;
    esac
  done
}

# Parses the value at json_pos; when its path of object keys is json_want, keeps it in json_value.
json_parse() {
  local depth=$1 matching=$2 key status
  json_ws
  case "${json_text:json_pos:1}" in
    '{')
      json_pos=$((json_pos + 1))
      json_ws
      if [[ "${json_text:json_pos:1}" == '}' ]]; then json_pos=$((json_pos + 1)); return 0; fi
      while :; do
        json_ws
        json_read_string || return
        key=$json_string
        json_ws
        [[ "${json_text:json_pos:1}" == ':' ]] || return 2
        json_pos=$((json_pos + 1))
        status=0
        if ((matching && depth < ${#json_want[@]})) && [[ "$key" == "${json_want[depth]}" ]]; then
          json_parse $((depth + 1)) 1 || status=$?
        else
          json_parse $((depth + 1)) 0 || status=$?
        fi
        ((status == 0)) || return "$status"
        json_ws
        case "${json_text:json_pos:1}" in
          ',') json_pos=$((json_pos + 1)) ;;
          '}') json_pos=$((json_pos + 1)); return 0 ;;
          *) return 2 ;;
        esac
      done
      ;;
    '[')
      json_pos=$((json_pos + 1))
      json_ws
      if [[ "${json_text:json_pos:1}" == ']' ]]; then json_pos=$((json_pos + 1)); return 0; fi
      while :; do
        json_parse $((depth + 1)) 0 || return
        json_ws
        case "${json_text:json_pos:1}" in
          ',') json_pos=$((json_pos + 1)) ;;
          ']') json_pos=$((json_pos + 1)); return 0 ;;
          *) return 2 ;;
        esac
      done
      ;;
    '"')
      json_read_string || return
      if ((matching && depth == ${#json_want[@]})); then json_value=$json_string json_found=1; fi
      json_string=''
      ;;
    *)
      [[ "${json_text:json_pos:64}" =~ ^(-?[0-9][0-9.eE+-]*|true|false|null) ]] || return 2
      json_pos=$((json_pos + ${#BASH_REMATCH[0]}))
      # Numbers are kept too (a parameter's Version); true, false and null are not values.
      if ((matching && depth == ${#json_want[@]})) && [[ "${BASH_REMATCH[0]}" == [-0-9]* ]]; then json_value=${BASH_REMATCH[0]} json_found=1; fi
      ;;
  esac
}

# json_get <text> <key>...: sets json_value to the string (or number) at that path of nested
# objects. 0: found; 1: absent; 2: not JSON; 3: the string holds U+0000.
json_get() {
  local LC_ALL=C status=0
  json_text=$1
  shift
  json_want=("$@") json_pos=0 json_value='' json_found=''
  json_parse 0 1 || status=$?
  if ((status == 0)); then
    json_ws
    [[ -z "${json_text:json_pos:1}" ]] || status=2
  fi
  json_text='' json_string=''
  if ((status != 0)); then json_value=''; return "$status"; fi
  [[ -n "$json_found" ]]
}
