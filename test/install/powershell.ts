/*
 * Just enough of a PowerShell reader to review the Windows install script where PowerShell
 * cannot run: strips comments and strings (keeping their places), checks that brackets balance,
 * and splits the script into its functions and top-level statements.
 */

/**
 * The script with comments blanked and, unless `keepStrings`, string contents replaced by
 * spaces; same length, same lines.
 */
export function blankCommentsAndStrings(source: string, keepStrings = false): string {
  const out = source.split('');
  let i = 0;
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  while (i < source.length) {
    const c = source[i];
    if (c === '<' && source[i + 1] === '#') {
      const end = source.indexOf('#>', i + 2);
      if (end < 0) throw new Error(`unterminated block comment at ${lineOf(source, i)}`);
      blank(i, end + 2);
      i = end + 2;
    } else if (c === '#') {
      const end = source.indexOf('\n', i);
      blank(i, end < 0 ? source.length : end);
      i = end < 0 ? source.length : end;
    } else if (c === "'") {
      // '' is an escaped quote inside a single-quoted string
      let j = i + 1;
      while (j < source.length && !(source[j] === "'" && source[j + 1] !== "'")) j += source[j] === "'" ? 2 : 1;
      if (j >= source.length) throw new Error(`unterminated '...' string at ${lineOf(source, i)}`);
      if (!keepStrings) blank(i + 1, j);
      i = j + 1;
    } else if (c === '"') {
      // ` escapes the next character; $( ... ) nests code, which may hold strings of its own
      let j = i + 1;
      let depth = 0;
      while (j < source.length) {
        if (source[j] === '`') { j += 2; continue; }
        if (source[j] === '$' && source[j + 1] === '(') { depth++; j += 2; continue; }
        if (depth > 0 && source[j] === ')') { depth--; j++; continue; }
        if (depth > 0 && source[j] === "'") { j = source.indexOf("'", j + 1) + 1; continue; }
        if (depth === 0 && source[j] === '"') break;
        j++;
      }
      if (j >= source.length) throw new Error(`unterminated "..." string at ${lineOf(source, i)}`);
      if (!keepStrings) blank(i + 1, j);
      i = j + 1;
    } else {
      i++;
    }
  }
  return out.join('');
}

function lineOf(source: string, index: number): string {
  return `line ${source.slice(0, index).split('\n').length}`;
}

/** Throws unless (), [] and {} balance outside comments and strings. */
export function checkBrackets(source: string): void {
  const code = blankCommentsAndStrings(source);
  const stack: Array<{ char: string; at: number }> = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  for (let i = 0; i < code.length; i++) {
    const c = code[i];
    if (c === '(' || c === '[' || c === '{') stack.push({ char: c, at: i });
    if (c in pairs) {
      const open = stack.pop();
      if (!open || open.char !== pairs[c]) throw new Error(`unbalanced '${c}' at ${lineOf(source, i)}`);
    }
  }
  if (stack.length > 0) throw new Error(`unclosed '${stack[stack.length - 1].char}' at ${lineOf(source, stack[stack.length - 1].at)}`);
}

/** Every `function Name ... { body }` of the script: name → body (comments blanked, strings kept). */
export function functions(source: string): Map<string, string> {
  const code = blankCommentsAndStrings(source);
  const text = blankCommentsAndStrings(source, true);
  const result = new Map<string, string>();
  const header = /^function ([A-Za-z0-9-]+)[^{]*\{/gm;
  let match: RegExpExecArray | null;
  while ((match = header.exec(code)) !== null) {
    const start = match.index + match[0].length;
    let depth = 1;
    let i = start;
    for (; i < code.length && depth > 0; i++) {
      if (code[i] === '{') depth++;
      if (code[i] === '}') depth--;
    }
    result.set(match[1], text.slice(start, i - 1));
  }
  return result;
}

/** The script outside its functions (comments blanked, strings kept). */
export function topLevel(source: string): string {
  const code = blankCommentsAndStrings(source);
  const text = blankCommentsAndStrings(source, true).split('');
  const header = /^function ([A-Za-z0-9-]+)[^{]*\{/gm;
  let match: RegExpExecArray | null;
  while ((match = header.exec(code)) !== null) {
    let depth = 1;
    let i = match.index + match[0].length;
    for (; i < code.length && depth > 0; i++) {
      if (code[i] === '{') depth++;
      if (code[i] === '}') depth--;
    }
    for (let k = match.index; k < i; k++) if (text[k] !== '\n') text[k] = ' ';
  }
  return text.join('');
}

/** Every `Finish '<outcome>' <code>` of a text, in order. */
export function finishCalls(text: string): Array<[string, number]> {
  return [...text.matchAll(/\bFinish '([a-z-]+)' (\d+)/g)].map((m) => [m[1], Number(m[2])]);
}
