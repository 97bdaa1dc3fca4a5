/** The dialRef names the claim token and the dial time: `leadId:claimSeq@epochMs` (design §7.1). */
export function dialRefOf(token: string, at: number): string {
  return `${token}@${at}`;
}

export function parseDialRef(dialRef: string): { token: string; at: number } {
  const sep = dialRef.lastIndexOf("@");
  return { token: dialRef.slice(0, sep), at: Number(dialRef.slice(sep + 1)) };
}
