# pragma version ~=0.4.3
"""
@title Test stablecoin for local chains
@notice A plain ERC-20 with 6 decimals, minting by its owner, and a batch transfer that
        emits one Transfer log per recipient in a single transaction. Deployed as USDT and
        USDC on the embedded development chain and in tests; never on a public network.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[16])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
owner: public(address)


@deploy
def __init__(_name: String[32], _symbol: String[16]):
    self.name = _name
    self.symbol = _symbol
    self.decimals = 6
    self.owner = msg.sender


@internal
def _transfer(_from: address, _to: address, _value: uint256):
    assert _to != empty(address), "transfer to the zero address"
    self.balanceOf[_from] -= _value
    self.balanceOf[_to] += _value
    log Transfer(sender=_from, receiver=_to, value=_value)


@external
def transfer(_to: address, _value: uint256) -> bool:
    self._transfer(msg.sender, _to, _value)
    return True


@external
def transferFrom(_from: address, _to: address, _value: uint256) -> bool:
    self.allowance[_from][msg.sender] -= _value
    self._transfer(_from, _to, _value)
    return True


@external
def approve(_spender: address, _value: uint256) -> bool:
    self.allowance[msg.sender][_spender] = _value
    log Approval(owner=msg.sender, spender=_spender, value=_value)
    return True


@external
def transferMany(_to: DynArray[address, 16], _values: DynArray[uint256, 16]) -> bool:
    assert len(_to) == len(_values), "one value per recipient"
    for i: uint256 in range(len(_to), bound=16):
        self._transfer(msg.sender, _to[i], _values[i])
    return True


@external
def mint(_to: address, _value: uint256):
    assert msg.sender == self.owner, "only the owner mints"
    assert _to != empty(address), "mint to the zero address"
    self.totalSupply += _value
    self.balanceOf[_to] += _value
    log Transfer(sender=empty(address), receiver=_to, value=_value)
